"""The table registry: every table declared once, by its domain, and every consumer reading that declaration."""
import pytest
from pyspark.sql import types as T

from lake_assets.catalog.tables import Registry, Table, tables_of
from lake_assets.definitions import build_defs, registry


@pytest.fixture(scope="module")
def defs():
    return build_defs("/tmp/unused-lake")


def _table_specs(defs):
    return {spec.key.to_user_string(): tables_of(spec.metadata or {})
            for spec in defs.resolve_all_asset_specs() if tables_of(spec.metadata or {})}


def test_every_table_is_declared_once_and_written_by_its_asset(defs):
    reg = registry()
    by_asset = _table_specs(defs)
    declared_by_assets = {t.qualified_name: (asset, t) for asset, ts in by_asset.items() for t in ts.values()}
    # The assets' metadata and the registry are the same declarations, no more, no fewer.
    assert sorted(declared_by_assets) == sorted(t.qualified_name for t in reg)
    for t in reg:
        asset, from_metadata = declared_by_assets[t.qualified_name]
        assert t.asset == asset and from_metadata == t
    # No location twice; every domain has tables, quarantine/rejected ones included.
    assert len({t.location for t in reg}) == len(reg)
    assert reg.domains == ["analytics", "commerce", "logs", "orders", "tpcds"]
    assert {t.zone for t in reg} >= {"processed", "rejected", "analytics", "silver", "quarantine", "gold",
                                      "discarded", "archive"}


def test_every_lake_io_manager_asset_declares_its_tables(defs):
    for spec in defs.resolve_all_asset_specs():
        if spec.metadata and "lake/date_column" in spec.metadata:
            assert tables_of(spec.metadata), spec.key


def test_logs_access_and_error_rows_are_two_tables_with_their_schemas():
    from lake_assets.domains.logs import contract

    reg = registry()
    assert reg.get("logs.access").schema is contract.ACCESS_SCHEMA
    assert reg.get("logs.errors").schema is contract.ERROR_SCHEMA
    assert reg.get("logs.access").asset == reg.get("logs.errors").asset == "processed_logs"


def test_partition_keys_types_and_a_column_both_in_files_and_path_registered_once():
    reg = registry()
    da = reg.get("logs.daily_activity")
    assert [(k.name, k.type) for k in da.partition_keys] == [("date", "date")]
    assert "date" in da.schema.names and "date" not in [f.name for f in da.columns]
    assert [(k.name, k.type) for k in reg.get("logs.access").partition_keys] == [
        ("year", "int"), ("month", "int"), ("day", "int")]
    assert [(k.name, k.type) for k in reg.get("orders.discarded").partition_keys] == [("extracted_at", "string")]
    assert reg.get("commerce.dim_users").partition_keys == ()
    # fact_user_activity keeps its `date` in the files and lives under event_date=: both are kept.
    fua = reg.get("commerce.fact_user_activity")
    assert "date" in [f.name for f in fua.columns] and [k.name for k in fua.partition_keys] == ["event_date"]


def test_table_paths_and_files():
    t = registry().get("logs.access")
    assert t.partition_values("year=2024/month=03/day=05") == ("2024", "03", "05")
    assert t.partition_path(("2024", "03", "05")) == "year=2024/month=03/day=05"
    assert t.file_path("year=2024/month=03/day=05") == "processed/logs/log_type=access/year=2024/month=03/day=05/part-00000.parquet"
    assert t.is_table_file("year=2024/month=03/day=05/part-00000.parquet")
    assert not t.is_table_file("year=2024/month=03/part-00000.parquet")
    assert not t.is_table_file("_stage/year=2024/month=03/day=05/part-00000.parquet")
    with pytest.raises(ValueError, match="is not a partition of logs.access"):
        t.partition_values("date=2024-03-05")
    archive = registry().get("orders.archive")
    assert archive.is_table_file("extracted_at=2024-01-01T000000.000000Z/part-00003.parquet")
    assert not archive.is_table_file("extracted_at=2024-01-01T000000.000000Z/_manifest.json")


def test_declarations_round_trip_and_refuse_mistakes():
    t = registry().get("commerce.silver_events")
    assert Table.from_json(t.to_json()) == t
    schema = T.StructType([T.StructField("a", T.StringType())])
    with pytest.raises(ValueError, match="zone"):
        Table("d", "x", "nowhere", "x", schema, "", "x")
    with pytest.raises(ValueError, match="declared twice"):
        Registry.of([Table("d", "x", "gold", "a", schema, "", "x"), Table("d", "x", "gold", "b", schema, "", "x")])
    with pytest.raises(ValueError, match="overlap"):
        Registry.of([Table("d", "x", "gold", "a", schema, "", "x"), Table("d", "y", "gold", "a/b", schema, "", "y")])


def test_no_domain_spelled_in_the_cli_and_a_new_domain_is_picked_up(monkeypatch, tmp_path, capsys):
    """The CLI iterates over domains: a domain added to DOMAINS gets `lake generate` and `lake catalog list`."""
    import inspect

    from lake_assets import cli
    from lake_assets.domain import Domain, Option
    from lake_assets.domains import DOMAINS

    source = inspect.getsource(cli)
    for name in DOMAINS:
        assert f'"{name}"' not in source and f"'{name}'" not in source and f"domains.{name}" not in source

    made = []
    toy = Table("toy", "numbers", "gold", "gold/toy/numbers", T.StructType([T.StructField("n", T.LongType())]),
                "toy numbers", "toy_numbers", partitioning=None)
    fake = Domain(name="toy", description="a toy", definitions=lambda: None, tables=lambda: (toy,),
                  generate=lambda storage, req: made.append(req) or f"made {req.options['widgets']} widgets",
                  run=lambda *a: None, generate_options=(Option("--widgets", int, 3, "toy: widgets"),))
    monkeypatch.setitem(DOMAINS, "toy", fake)
    monkeypatch.setenv("LAKE_ROOT", str(tmp_path / "lake"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert cli.main(["generate", "toy", "--widgets", "5", "--days", "2"]) == 0
    assert made[0].options == {"widgets": 5} and made[0].days == 2
    assert "toy: made 5 widgets" in capsys.readouterr().out
    assert cli.main(["catalog", "list"]) == 0
    assert "toy.numbers" in capsys.readouterr().out
