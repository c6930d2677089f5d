"""The staleness rule's refinements over materialization order: a whole table rebuilt with the same
rows (the same fingerprint) does not make what was built from it stale; other rows, or no fingerprint, do.
An asset whose partitions the data brings (months) is stale where a report of changes says, not
wherever a whole input changed; ``lake run``'s ranges follow the keys' order."""
from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetKey,
    AssetMaterialization,
    AssetSpec,
    DagsterInstance,
    DailyPartitionsDefinition,
    Definitions,
    DynamicPartitionsDefinition,
    asset,
)

from lake_assets.staleness import CHANGES_FROM, FINGERPRINT, domain_status

DAYS = DailyPartitionsDefinition(start_date="2024-03-01")
DAY = "2024-03-01"


@asset(partitions_def=DAYS)
def landed():
    """Stands for a domain's ingested source."""


@asset(deps=[landed])
def dim():
    """A whole table built from every date."""


@asset(partitions_def=DAYS, deps=[landed, dim])
def fact():
    """A date built from its own source date and the whole dimension."""


def _stale(instance) -> dict:
    status = domain_status(Definitions(assets=[landed, dim, fact]), instance, domain="t",
                           sources=[landed.key])
    return {(s.asset, s.partition): s.reason for s in status.stale}


def _materialize(instance, key: str, partition: str | None = None, fingerprint: str | None = None):
    metadata = {FINGERPRINT: fingerprint} if fingerprint else {}
    instance.report_runless_asset_event(AssetMaterialization(key, partition=partition, metadata=metadata))


def test_a_whole_input_rebuilt_with_the_same_rows_leaves_its_readers_fresh():
    with DagsterInstance.ephemeral() as instance:
        _materialize(instance, "landed", DAY)
        _materialize(instance, "dim", fingerprint="3:42:abc")
        _materialize(instance, "fact", DAY)
        assert _stale(instance) == {}
        _materialize(instance, "dim", fingerprint="3:42:abc")  # rebuilt (another range's run): same rows
        assert _stale(instance) == {}
        _materialize(instance, "dim", fingerprint="4:77:abc")  # other rows
        assert _stale(instance) == {("fact", DAY): "dim changed after it was built"}
        _materialize(instance, "fact", DAY)
        assert _stale(instance) == {}
        _materialize(instance, "dim")  # no fingerprint (not written by the IO manager): changed, as before
        assert _stale(instance) == {("fact", DAY): "dim changed after it was built"}
        _materialize(instance, "fact", DAY)
        _materialize(instance, "dim", fingerprint="4:77:abc")  # same rows as two builds ago, not as at the build
        assert _stale(instance) == {("fact", DAY): "dim changed after it was built"}


# -- partitions the data brings: what a report names is stale, not what a whole input touches ---------------
MONTHS = DynamicPartitionsDefinition(name="test_month")
changes = AssetSpec("changes", deps=[dim], partitions_def=MONTHS)


@asset(partitions_def=MONTHS, deps=[AssetDep(landed, partition_mapping=AllPartitionMapping()), dim, changes],
       metadata={CHANGES_FROM: ["changes"]})
def monthly():
    """A month built from every source date and the whole dimension; what changed is what ``changes`` says."""


def _stale_months(instance) -> dict:
    status = domain_status(Definitions(assets=[landed, dim, changes, monthly]), instance, domain="t",
                           sources=[landed.key])
    return {(s.asset, s.partition): s.reason for s in status.stale if s.asset == "monthly"}


def test_a_month_is_stale_when_its_change_is_reported_not_when_a_whole_input_changes():
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("test_month", ["1999-01", "1999-02", "1999-03"])
        _materialize(instance, "landed", DAY)
        _materialize(instance, "dim")
        assert _stale_months(instance) == {}  # nothing reported: nothing to build
        for m in ("1999-01", "1999-02", "1999-03"):
            _materialize(instance, "changes", m)
        assert set(_stale_months(instance)) == {("monthly", m) for m in ("1999-01", "1999-02", "1999-03")}
        for m in ("1999-01", "1999-02", "1999-03"):
            _materialize(instance, "monthly", m)
        assert _stale_months(instance) == {}
        _materialize(instance, "landed", DAY)  # a new delivery, and the dimension rebuilt from it
        _materialize(instance, "dim")
        assert _stale_months(instance) == {}  # until a report names the months it touches
        _materialize(instance, "changes", "1999-02")
        assert _stale_months(instance) == {("monthly", "1999-02"): "changes[1999-02] changed after it was built"}


def test_date_ranges_follow_the_keys_order():
    from lake_assets.pipeline import contiguous_ranges

    order = ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04"]
    assert contiguous_ranges({"2024-03-04", "2024-03-01", "2024-03-02"}, order) == [
        ("2024-03-01", "2024-03-02"), ("2024-03-04", "2024-03-04")]
    assert contiguous_ranges({"2024-03-09"}, order) == []  # not a key of the definition


def test_a_partition_rebuilt_unchanged_is_no_reason_to_rebuild_its_readers():
    from lake_assets.staleness import UNCHANGED, changed_partitions

    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("test_month", ["1999-01", "1999-02"])
        _materialize(instance, "landed", DAY)
        for m in ("1999-01", "1999-02"):
            _materialize(instance, "changes", m)
            _materialize(instance, "monthly", m)
        assert changed_partitions(instance, monthly.key, [changes.key], ["1999-01", "1999-02"]) == []
        _materialize(instance, "changes", "1999-02")
        assert changed_partitions(instance, monthly.key, [changes.key], ["1999-01", "1999-02"]) == ["1999-02"]
        # a run over both months: 1999-01 kept its files and says so
        instance.report_runless_asset_event(AssetMaterialization("monthly", partition="1999-01",
                                                                 metadata={UNCHANGED: True}))
        _materialize(instance, "monthly", "1999-02")
        gold = changed_partitions  # a reader of monthly, by the same rule
        assert gold(instance, AssetKey("reader"), [monthly.key], ["1999-01", "1999-02"]) == ["1999-01", "1999-02"]
        instance.report_runless_asset_event(AssetMaterialization("reader", partition="1999-01"))
        instance.report_runless_asset_event(AssetMaterialization("reader", partition="1999-02"))
        instance.report_runless_asset_event(AssetMaterialization("monthly", partition="1999-01",
                                                                 metadata={UNCHANGED: True}))
        _materialize(instance, "monthly", "1999-02")
        assert gold(instance, AssetKey("reader"), [monthly.key], ["1999-01", "1999-02"]) == ["1999-02"]
