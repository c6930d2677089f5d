"""The analytics room end to end, through `lake run`'s path: commerce gold -> features -> model -> predictions
-> the lake report, on four weeks of generated commerce data.

The module runs commerce and then the analytics domain once (as ``lake run`` does, in order);
the tests then read what they wrote with pyarrow and DuckDB (an independent computation of the
labels and of who gets a row), MLflow's store, and a real browser on the report in the lake.
Later tests add a day and retrain on demand, so they run in file order.
"""
from __future__ import annotations

import datetime as dt

import pytest

START = dt.date(2024, 3, 1)
DAYS = 28  # the model needs 7 days to train, a 7-day gap, a 7-day holdout, and 7 more to label them
LAST = START + dt.timedelta(days=DAYS - 1)
USERS, EVENTS, TRANSACTIONS = 150, 300, 40  # per day; enough users for a week of training to beat recency


@pytest.fixture(scope="module")
def lake(tmp_path_factory, spark, run_lake):
    """(defs, instance, storage, commerce run, analytics run): four weeks of commerce, built, then analytics."""
    from dagster import DagsterInstance

    from lake_assets.definitions import build_defs
    from lake_assets.domains import DOMAINS
    from lake_assets.domains.commerce.generator import generate_commerce
    from lake_assets.lake import LakeStorage
    from lake_assets.settings import LakeSettings

    base = tmp_path_factory.mktemp("analytics")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(base / "home"))  # MLflow's default store lives in it
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.setenv("LAKE_CATALOG_PATH", str(base / "catalog.duckdb"))
        # Clean rows (the commerce tests plant the bad ones): one range of dates, no ingest-date partition.
        (base / "home").mkdir()
        storage = LakeStorage(str(base / "lake"))
        generate_commerce(storage.write_bytes, start=START, days=DAYS, users=USERS, events_per_day=EVENTS,
                          transactions_per_day=TRANSACTIONS, bad_share=0.0, bad_files=False, seed=3)
        settings = LakeSettings.from_env()
        defs = build_defs(storage.root_uri, settings)
        instance = DagsterInstance.ephemeral()
        commerce = run_lake(defs, instance, "commerce")
        analytics = DOMAINS["analytics"].run(defs, instance, storage, lambda _: None, settings)
        yield {"defs": defs, "instance": instance, "storage": storage, "settings": settings, "mp": mp,
               "commerce": commerce, "analytics": analytics, "base": base}
        instance.dispose()


def _failures(run):
    return [(r.job, r.partitions, r.failures, r.failed_checks) for r in run.runs if not r.success]


def _materializations(instance, key: str):
    from dagster import AssetKey

    return instance.fetch_materializations(AssetKey(key), limit=1000).records


def _meta(record) -> dict:
    return {k: getattr(v, "value", v) for k, v in record.asset_materialization.metadata.items()}


def _duck(storage, read_parquet, **prefixes):
    import duckdb

    con = duckdb.connect()
    for name, (prefix, hive) in prefixes.items():
        con.register(name, read_parquet(storage, prefix, hive=hive))
    return con


def test_commerce_then_analytics_succeed_and_leave_nothing_stale(lake):
    from lake_assets.staleness import domain_status

    assert lake["commerce"].success, _failures(lake["commerce"])
    assert lake["analytics"].success, _failures(lake["analytics"])
    status = domain_status(lake["defs"], lake["instance"], domain="analytics", sources=[],
                           build_job="analytics_pipeline_job")
    assert status.stale == []
    # One build of the lake's four weeks: features, the first model, predictions, the report.
    runs = lake["analytics"].runs
    assert len(runs) == 1, " | ".join(f"{r.partitions}: {','.join(s.step for s in r.steps)}" for r in runs)
    [run] = runs
    assert run.partitions == (START.isoformat(), LAST.isoformat())
    assert "purchase_propensity_model" in {s.step for s in run.steps}


def test_features_rows_and_labels_match_an_independent_computation(lake, read_parquet):
    storage = lake["storage"]
    con = _duck(storage, read_parquet,
                features=("ml/features/user_features", None),
                events=("gold/fact/fact_events", {"event_date": "_day"}),
                tx=("gold/fact/fact_transactions", {"event_date": "_day"}),
                users=("gold/dim/dim_users", None))
    known_until = con.execute("SELECT max(CAST(_day AS DATE)) FROM events").fetchone()[0]
    got = con.execute("SELECT user_id, event_date, label FROM features ORDER BY ALL").fetchall()
    # Who: an event in the 28 days to the as-of date, and a user dim_users knows; the label: a completed
    # transaction in the 7 days after, known once those days are in the lake.
    want = con.execute(f"""
        WITH days AS (SELECT DISTINCT CAST(ts AS DATE) AS d FROM events),
        active AS (
            SELECT DISTINCT e.user_id, days.d AS event_date FROM days JOIN events e
              ON CAST(e.ts AS DATE) BETWEEN days.d - 27 AND days.d
            WHERE e.user_id IN (SELECT user_id FROM users WHERE user_id IS NOT NULL)
        )
        SELECT a.user_id, a.event_date,
               CASE WHEN a.event_date + 7 > DATE '{known_until}' THEN NULL
                    ELSE (SELECT CAST(count(*) > 0 AS INT) FROM tx WHERE tx.user_id = a.user_id
                          AND tx.status = 'completed'
                          AND CAST(tx.created_at AS DATE) > a.event_date
                          AND CAST(tx.created_at AS DATE) <= a.event_date + 7) END AS label
        FROM active a ORDER BY ALL""").fetchall()
    assert len(got) > 500
    assert got == want
    labelled = {r[1] for r in got if r[2] is not None}
    assert max(labelled) == known_until - dt.timedelta(days=7)
    assert 0.1 < sum(r[2] for r in got if r[2] is not None) / sum(1 for r in got if r[2] is not None) < 0.9


def test_the_first_model_is_the_champion_in_mlflow_and_beats_the_baseline(lake):
    from lake_assets.analytics import registry

    uri = registry.tracking_uri(str(lake["base"] / "home"))
    assert uri.startswith("sqlite:///") and (lake["base"] / "home" / "mlflow" / "mlflow.db").exists()
    decisions = registry.decisions(uri)
    assert [(d["version"], d["decision"]) for d in decisions] == [(1, "promoted")], [(d["reason"], d["metrics"]) for d in decisions]
    info = registry.champion_info(uri)
    assert info["version"] == 1
    assert info["metrics"]["model_auc_roc"] > info["metrics"]["baseline_auc_roc"]
    assert "recency_days" in info["features"]["numeric"] and info["features"]["categorical"] == ["country"]
    # The model artifacts are in the lake, under MLflow's artifact store.
    assert any(f.path.endswith("MLmodel") for f in lake["storage"].list_files("ml/models/mlflow"))
    [mat] = _materializations(lake["instance"], "purchase_propensity_model")
    meta = _meta(mat)
    assert meta["decision"] == "promoted" and meta["model_version"] == 1 and meta["lake/provisional"] is False
    assert meta["holdout_auc_roc"] > meta["baseline_auc_roc"]


def test_predictions_score_every_active_user_by_the_champion_and_the_check_passed(lake, read_parquet):
    storage = lake["storage"]
    con = _duck(storage, read_parquet, features=("ml/features/user_features", None),
                scores=("curated/predictions/purchase_propensity", None))
    last = con.execute("SELECT max(event_date) FROM scores").fetchone()[0]
    assert last >= LAST
    users = lambda table: con.execute(  # noqa: E731
        f"SELECT user_id FROM {table} WHERE event_date = DATE '{last}' ORDER BY 1").fetchall()
    assert users("scores") == users("features") and len(users("scores")) > 10
    bounds = con.execute("SELECT min(score), max(score), min(model_version), max(model_version) FROM scores").fetchone()
    assert 0.0 <= bounds[0] < bounds[1] <= 1.0 and bounds[2:] == (1, 1)
    from dagster import DagsterEventType

    evaluations = [e.dagster_event.event_specific_data for r in lake["analytics"].runs
                   for e in lake["instance"].all_logs(r.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)]
    valid = [e for e in evaluations if e.check_name == "purchase_propensity_valid"]
    assert valid and all(e.passed for e in valid)
    assert all(e.passed for e in evaluations)


def test_the_report_in_the_lake_shows_every_section_in_a_browser(lake, open_in_browser):
    from lake_assets.analytics.tables import REPORT_FILE

    meta = _meta(_materializations(lake["instance"], "lake_report")[0])  # the newest
    assert meta["charts_failed"] == 0 and meta["charts_drawn"] >= 8 and meta["data_points"] > 100
    path = lake["storage"].local_path(REPORT_FILE)
    html = open(path, encoding="utf-8").read()
    assert "<script src" not in html and html.count("plotly.js v") >= 1  # the library inlined, nothing linked
    seen = open_in_browser(path)
    assert seen["console"] == [] and seen["page"] == [] and seen["blocked"] == []
    drawn = {c["id"] for c in seen["charts"]}
    # Commerce's declared charts, the data quality over time, the model against its baseline, the scores.
    assert {"commerce--completed-revenue-per-country-by-currency", "commerce--active-users-per-country-per-day",
            "data-quality--quarantine-rate-per-dataset", "model--metrics-against-the-baseline",
            "model--score-distribution-of-the-latest-predictions"} <= drawn
    for chart in seen["charts"]:
        assert chart["points"] == chart["declared"] > 0, chart["id"]


def test_every_table_materialization_carries_numbers_the_ui_plots(lake):
    """Rows, and the quarantine rate and null rates where a table has them, as numeric metadata."""
    from lake_assets.catalog.tables import tables_of

    defs, instance = lake["defs"], lake["instance"]
    for assets_def in defs.assets:
        for spec in getattr(assets_def, "specs", []):
            if not tables_of(spec.metadata or {}) or not _materializations(instance, spec.key.to_user_string()):
                continue
            meta = _meta(_materializations(instance, spec.key.to_user_string())[0])
            assert isinstance(meta["dagster/row_count"], int), spec.key
    silver = _meta(_materializations(instance, "silver_events")[0])
    assert isinstance(silver["metrics/quarantine_rate"], float) and 0 <= silver["metrics/quarantine_rate"] < 1
    assert any(k.startswith("metrics/null_rate.") and isinstance(v, float) for k, v in silver.items())
    features = _meta(_materializations(instance, "user_features")[0])
    assert isinstance(features["metrics/null_rate.label"], float)


def test_a_second_run_builds_nothing(lake):
    from lake_assets.domains import DOMAINS

    again = DOMAINS["analytics"].run(lake["defs"], lake["instance"], lake["storage"], lambda _: None,
                                     lake["settings"])
    assert again.success and again.runs == []


def test_a_new_day_labels_the_week_before_and_is_scored_without_retraining(lake, run_lake, read_parquet):
    from lake_assets.domains import DOMAINS
    from lake_assets.domains.commerce.generator import generate_commerce

    storage, instance = lake["storage"], lake["instance"]
    models_before = len(_materializations(instance, "purchase_propensity_model"))
    new_day = LAST + dt.timedelta(days=1)
    generate_commerce(storage.write_bytes, start=new_day, days=1, users=USERS, events_per_day=EVENTS,
                      transactions_per_day=TRANSACTIONS, bad_share=0.0, bad_files=False, seed=4)
    # Events and transactions only: a day with no new user version (which would rebuild every date).
    for f in storage.list_files("raw/users"):
        storage.delete(f.path)
    assert run_lake(lake["defs"], instance, "commerce").success
    out = DOMAINS["analytics"].run(lake["defs"], instance, storage, lambda _: None, lake["settings"])
    assert out.success, _failures(out)
    # The model is trained on its schedule or on demand, not by a new day.
    assert len(_materializations(instance, "purchase_propensity_model")) == models_before
    con = _duck(storage, read_parquet, features=("ml/features/user_features", None),
                scores=("curated/predictions/purchase_propensity", None))
    newest_labelled = con.execute("SELECT max(event_date) FROM features WHERE label IS NOT NULL").fetchone()[0]
    assert newest_labelled == new_day - dt.timedelta(days=7)
    assert con.execute(f"SELECT count(*), min(model_version) FROM scores WHERE event_date = DATE '{new_day}'"
                       ).fetchone()[0] > 10


def test_training_on_demand_records_the_challengers_decision_and_every_date_awaits_rescoring(lake):
    from lake_assets.analytics import registry
    from lake_assets.pipeline import QUIET

    defs, instance, storage = lake["defs"], lake["instance"], lake["storage"]
    result = defs.resolve_job_def("train_propensity_job").execute_in_process(
        run_config=QUIET, instance=instance, raise_on_error=False)
    assert result.success
    uri = registry.tracking_uri(str(lake["base"] / "home"))
    decisions = registry.decisions(uri)
    assert [d["version"] for d in decisions] == [1, 2]
    second = decisions[1]
    assert second["decision"] in ("promoted", "rejected") and second["reason"]
    champion = registry.champion_version(uri)
    assert champion == (2 if second["decision"] == "promoted" else 1)
    # Every date's predictions are now stale (the model changed after them): the next run rescores them.
    from lake_assets.staleness import domain_status

    status = domain_status(defs, instance, domain="analytics", sources=[], build_job="analytics_pipeline_job")
    stale = {(s.asset, s.partition) for s in status.stale}
    scored = {p for (a, p) in stale if a == "purchase_propensity"}
    assert scored >= {(LAST - dt.timedelta(days=i)).isoformat() for i in range(DAYS)}
    assert all(s.reason == "purchase_propensity_model changed after it was built"
               for s in status.stale if s.asset == "purchase_propensity")
    assert ("purchase_propensity_model", None) not in stale  # trained: not rebuilt by the run


def test_the_predictions_check_blocks_a_bad_score_an_unknown_user_and_another_version(lake, check_metadata):
    """A crafted predictions partition (a date with no data, so nothing real is touched) fails the check."""
    from dagster import asset, materialize

    from lake_assets.analytics import checks
    from lake_assets.analytics.assets import PREDICTIONS
    from lake_assets.analytics.tables import PREDICTIONS_SCHEMA
    from lake_assets.partitions import daily_partitions

    day = LAST + dt.timedelta(days=20)
    scored_at = dt.datetime(2024, 4, 1)

    @asset(name="purchase_propensity", partitions_def=daily_partitions(lake["settings"].start_date),
           io_manager_key="lake_io_manager", metadata=PREDICTIONS)
    def crafted(context):
        from pyspark.sql import SparkSession

        rows = [("u_nobody", day, 0.5, 1, scored_at), ("u_nobody2", day, 1.5, 99, scored_at)]
        return SparkSession.getActiveSession().createDataFrame(rows, PREDICTIONS_SCHEMA)

    [valid] = [c for c in checks.build(lake["settings"]) if "purchase_propensity_valid" in
               {k.name for k in c.check_keys}]
    resources = {k: v for k, v in lake["defs"].resources.items()
                 if k in ("lake", "spark", "catalog", "lake_io_manager", "model_registry")}
    result = materialize([crafted, valid], resources=resources, instance=lake["instance"],
                         partition_key=day.isoformat(), raise_on_error=False)
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed
    meta = check_metadata(evaluation)
    assert meta["scores_out_of_range"] == 1 and meta["users_not_in_dim_users"] == 2
    assert meta["rows_not_by_champion"] >= 1 and meta["duplicate_keys"] == 0
