"""The staleness rule's one refinement over materialization order: a whole table rebuilt with the same
rows (the same fingerprint) does not make what was built from it stale; other rows, or no fingerprint, do."""
from dagster import (
    AssetMaterialization,
    DagsterInstance,
    DailyPartitionsDefinition,
    Definitions,
    asset,
)

from lake_assets.staleness import FINGERPRINT, domain_status

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
