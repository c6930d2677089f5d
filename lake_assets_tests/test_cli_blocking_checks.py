"""Each kind of blocking check failing under `lake run`, as a data engineer meets it: the run exits 1,
the output names the check, and the gold it guards is not built (while the rest of the run is).

A fault is put into the domain code the assets call (a bug in a transform), on a small generated lake;
the failure paths of the checks themselves (exact metadata, metrics rows) are tested beside each domain.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import Window
from pyspark.sql import functions as F

from lake_assets import cli
from lake_assets.domains.commerce import gold, silver
from lake_assets.domains.logs import contract
from lake_assets.lake import LakeStorage

DAY = "2024-05-01"


def _wrap(monkeypatch, module, name: str, change: Callable[..., DataFrame]) -> None:
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: change(real(*a, **k), *a))


def _one_row_fewer(df: DataFrame) -> DataFrame:
    """``df`` less one row (the first in column order): a record lost by a bug."""
    return df.withColumn("_n", F.row_number().over(Window.orderBy(*df.columns))).where("_n > 1").drop("_n")


def logs_schema(mp):
    # processed access rows with an HTTP status no server sends: pandera's in_range(100, 599) fails.
    _wrap(mp, contract, "valid_rows", lambda df, _, schema: df.withColumn("status", F.lit(999).cast("int"))
          if "status" in schema.names else df)


def logs_conservation(mp):
    # processed loses rows on the way: valid + rejected no longer add up to what was ingested.
    _wrap(mp, contract, "valid_rows", lambda df, *_: _one_row_fewer(df))


def commerce_keys(mp):
    # fact_transactions holds a transaction twice, with a status dim_status does not know.
    _wrap(mp, gold, "fact_transactions",
          lambda df, *_: df.unionByName(df.limit(1)).withColumn("status", F.lit("teleported")))


def commerce_scd2(mp):
    # dim_users without its unknown member (key -1): facts of unknown users would point nowhere.
    _wrap(mp, gold, "dim_users", lambda df, *_: df.where(F.col("user_key") != gold.UNKNOWN_USER_KEY))


def commerce_accounting(mp):
    # silver drops some valid transactions: bronze rows no longer all land in silver or quarantine.
    _wrap(mp, silver, "silver_rows", lambda df, _, spec, *__: _one_row_fewer(df)
          if spec.name == "transactions" else df)


def commerce_drift(mp):
    # silver events written without a column the catalog gives readers: a removed column.
    _wrap(mp, silver, "silver_rows", lambda df, _, spec, *__: df.drop("_extra") if spec.name == "events" else df)


#: kind -> (domain generated, fault, the check the run names, guarded gold left unbuilt, gold still built)
CASES = {
    "pandera schema": ("logs", logs_schema, "processed_logs:processed_logs_schema",
                       [f"analytics/daily_activity/date={DAY}"], []),
    "count conservation": ("logs", logs_conservation, "processed_logs:processed_logs_count_conservation",
                           [f"analytics/daily_activity/date={DAY}"], []),
    "keys and orphans": ("commerce", commerce_keys, "fact_transactions:fact_transactions_keys",
                         [f"gold/mart/daily_revenue/event_date={DAY}"], [f"gold/fact/fact_events/event_date={DAY}"]),
    "scd2": ("commerce", commerce_scd2, "dim_users:dim_users_scd2",
             [f"gold/fact/fact_events/event_date={DAY}", "gold/mart/user_ltv"], ["gold/dim/dim_country"]),
    "every row accounted": ("commerce", commerce_accounting,
                            "silver_transactions:silver_transactions_every_row_accounted",
                            [f"gold/fact/fact_transactions/event_date={DAY}"],
                            [f"gold/fact/fact_events/event_date={DAY}"]),
    "schema drift": ("commerce", commerce_drift, "silver_events:schema_drift",
                     [f"gold/fact/fact_events/event_date={DAY}"],
                     [f"gold/fact/fact_transactions/event_date={DAY}"]),
}

GENERATE = {
    "logs": ["generate", "logs", "--days", "1", "--records-per-day", "120", "--start", DAY,
             "--bad-share", "0", "--bad-files", "0"],
    "commerce": ["generate", "commerce", "--days", "1", "--records-per-day", "40", "--users", "6",
                 "--start", DAY, "--bad-share", "0", "--bad-files", "0"],
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Each domain's raw files, generated once; every case copies them into its own lake."""
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        for domain, args in GENERATE.items():
            lake = tmp_path_factory.mktemp(f"raw_{domain}")
            mp.setenv("LAKE_ROOT", str(lake))
            assert cli.main(args) == 0
            out[domain] = lake
    return out


@pytest.mark.parametrize("kind", list(CASES))
def test_a_failing_blocking_check_exits_non_zero_naming_it_and_its_gold_is_not_built(
        kind, generated, tmp_path, spark, capsys, monkeypatch):
    domain, fault, check, unbuilt, built = CASES[kind]
    lake, home = tmp_path / "lake", tmp_path / "home"
    shutil.copytree(generated[domain], lake)
    home.mkdir()
    monkeypatch.setenv("LAKE_ROOT", str(lake))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    fault(monkeypatch)

    assert cli.main(["run", domain]) == 1  # (the domain alone: what reads its gold is not this test's)
    out = capsys.readouterr().out
    assert f"FAILED {domain}: {domain}_pipeline_job for {DAY}..{DAY}" in out
    assert f"blocking check failed: {check}" in out
    assert "finished with failures" in out
    storage = LakeStorage(str(lake))
    assert storage.list_files("raw") == []  # ingestion itself went through
    for prefix in unbuilt:
        assert not storage.list_files(prefix), prefix
    for prefix in built:  # what the failed check does not guard was built in the same run
        assert storage.list_files(prefix), prefix
    # The failed run is kept in the lake (the seed's rejected/system/), naming the check.
    [record] = storage.list_files(f"rejected/system/jobs/{domain}_pipeline_job")
    kept = json.loads(storage.read_text(record.path))
    assert kept["run_id"] in out and kept["partitions"] == {"start": DAY, "end": DAY}
    assert check in kept["failed_checks"]
