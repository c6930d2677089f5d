"""`lake report`, `lake train` and the weekly retraining schedule, on a lake with nothing to train on yet."""
from __future__ import annotations

from lake_assets import cli
from lake_assets.lake import LakeStorage


def test_report_and_train_on_a_lake_without_history(tmp_path, monkeypatch, capsys, spark):
    lake, home = tmp_path / "lake", tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("LAKE_ROOT", str(lake))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    assert cli.main(["report"]) == 0
    out = capsys.readouterr().out
    path = str(lake / "reports" / "lake_report.html")
    assert out.strip().splitlines()[-1] == path  # the path alone on the last line, for scripts
    html = LakeStorage(str(lake)).read_text("reports/lake_report.html")
    # Every section is there and says why it is empty; nothing is drawn from nothing.
    assert "No data yet: needs logs.daily_activity" in html and "No model yet" in html

    assert cli.main(["train"]) == 0
    out = capsys.readouterr().out
    assert "purchase_propensity_model: insufficient_data: not trained: 0 labelled as-of date(s)" in out
    assert not (home / "mlflow").exists()  # no model, so no store was created


def test_the_model_is_retrained_weekly_and_nothing_else_is():
    from lake_assets.definitions import build_defs

    defs = build_defs("/nonexistent/lake")
    schedule = defs.resolve_schedule_def("propensity_weekly_retrain_schedule")
    assert schedule.cron_schedule == "0 4 * * 1" and schedule.execution_timezone == "UTC"
    job = defs.resolve_job_def(schedule.job_name)
    assert [k.to_user_string() for k in job.asset_layer.executable_asset_keys] == ["purchase_propensity_model"]


def test_a_tracking_uri_with_credentials_stays_out_of_what_the_ui_shows(monkeypatch, tmp_path):
    """MLFLOW_TRACKING_URI may hold a password: the resource holds the variable's name, not its value,
    in the definitions (what the UI's resource page shows)."""
    import json

    from dagster import EnvVar

    from lake_assets.definitions import build_defs

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://mlflow:s3cr3t@db.example:5432/mlflow")
    repo = build_defs(str(tmp_path / "lake")).get_repository_def()
    resource = repo.get_top_level_resources()["model_registry"]
    shown = resource.config_schema.as_field().default_value
    assert shown["tracking_uri"] == {"env": "MLFLOW_TRACKING_URI"} and "s3cr3t" not in json.dumps(shown)

    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # unset: the SQLite store in the Dagster home, no secret
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    from lake_assets.analytics.resources import ModelRegistryResource

    uri = ModelRegistryResource.from_env().tracking_uri
    assert not isinstance(uri, EnvVar) and uri == f"sqlite:///{tmp_path / 'home' / 'mlflow' / 'mlflow.db'}"
