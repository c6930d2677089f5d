"""``quality.metrics.summarize``: several partitions' numbers as one set of metadata."""
from __future__ import annotations

import pytest

from lake_assets.quality.metrics import FAILED, PASSED, Metric, check_metrics, rule_metrics, summarize


def test_counts_are_summed_null_rates_weighted_and_the_quarantine_rate_recomputed():
    per_partition = {
        "2024-03-01": [Metric("rows", 10), Metric("null_rate.email", 0.5), Metric("total_rows", 12),
                       Metric("quarantined_rows", 2), Metric("quarantine_rate", 0.166667),
                       Metric("rule.bad_email", 2, FAILED)],
        "2024-03-02": [Metric("rows", 30), Metric("null_rate.email", 0.1), Metric("total_rows", 30),
                       Metric("quarantined_rows", 0), Metric("quarantine_rate", 0.0),
                       Metric("rule.bad_email", 0, PASSED)],
    }
    got = summarize(per_partition)
    assert got["rows"] == 40 and got["total_rows"] == 42 and got["quarantined_rows"] == 2
    assert got["rule.bad_email"] == 2
    # (0.5 * 10 + 0.1 * 30) / 40, not the mean of the two rates (0.3).
    assert got["null_rate.email"] == pytest.approx(0.2)
    # 2 / 42 from the summed counts, not the mean of the two rates.
    assert got["quarantine_rate"] == round(2 / 42, 6)


def test_subtables_weight_their_null_rates_by_their_own_rows():
    per_partition = {
        "a": [Metric("access.rows", 4), Metric("access.null_rate.path", 0.25),
              Metric("error.rows", 0), Metric("error.null_rate.message", 0.0)],
        "b": [Metric("access.rows", 6), Metric("access.null_rate.path", 0.5),
              Metric("error.rows", 2), Metric("error.null_rate.message", 1.0)],
    }
    got = summarize(per_partition)
    assert got["access.rows"] == 10 and got["error.rows"] == 2
    assert got["access.null_rate.path"] == pytest.approx((0.25 * 4 + 0.5 * 6) / 10)
    assert got["error.null_rate.message"] == 1.0  # the empty partition weighs nothing


def test_empty_partitions_give_zero_rates_and_no_quarantine_rate_without_counts():
    got = summarize({"a": [Metric("rows", 0), Metric("null_rate.x", 0.0), Metric("total_rows", 0),
                           Metric("quarantined_rows", 0), Metric("quarantine_rate", 0.0)]})
    assert got == {"rows": 0, "null_rate.x": 0.0, "total_rows": 0, "quarantined_rows": 0, "quarantine_rate": 0.0}
    assert "quarantine_rate" not in summarize({"a": [Metric("rows", 3), Metric("quarantine_rate", 0.5)]})
    assert summarize({}) == {}


def test_rule_and_check_outcomes():
    assert rule_metrics({"b": 2, "zz": 1}, ["a", "b"]) == [
        Metric("rule.a", 0, PASSED), Metric("rule.b", 2, FAILED), Metric("rule.zz", 1, FAILED)]
    assert check_metrics("c", False, 3) == [Metric("check.c", 3, FAILED)]


def test_files_rejects_and_record_file_one_csv_per_partition_and_the_runs_metadata(tmp_path):
    """The one path every domain files its numbers through: footers of the files written (several
    files under one prefix summed), the quarantine beside them, a CSV per partition, metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lake_assets.lake import LakeStorage
    from lake_assets.quality.metrics import files_metrics, read_metrics, record, reject_metrics

    storage = LakeStorage(str(tmp_path))

    def write(path: str, table: pa.Table) -> None:
        out = pa.BufferOutputStream()
        pq.write_table(table, out)
        storage.write_bytes(path, out.getvalue().to_pybytes())

    write("t/a.parquet", pa.table({"id": [1, 2, 3, 4], "email": ["a", None, "c", "d"]}))
    write("t/b.parquet", pa.table({"id": [5, 6], "email": [None, None]}))
    write("t/rejects.parquet", pa.table({"reason": ["bad_email", "bad_id"],
                                         "reasons": [["bad_email"], ["bad_id", "bad_email"]]}))
    found = files_metrics(storage, {"": ["t/a.parquet", "t/b.parquet"]})
    assert {m.name: m.value for m in found} == {"rows": 6, "null_rate.id": 0.0, "null_rate.email": 0.5}
    found += reject_metrics(storage, 6, "t/rejects.parquet", rules=["bad_email", "bad_id", "bad_ts"])
    assert {m.name: (m.value, m.outcome) for m in found[3:]} == {
        "total_rows": (8, ""), "quarantined_rows": (2, ""), "quarantine_rate": (0.25, ""),
        "rule.bad_email": (2, FAILED), "rule.bad_id": (1, FAILED), "rule.bad_ts": (0, PASSED)}

    md = record(storage, dataset="d", asset="t", run_id="r1", per_partition={"2024-03-01": found})
    assert md["metrics/rows"] == 6 and md["metrics/quarantine_rate"] == 0.25 and md["metrics/rule.bad_id"] == 1
    assert md["metrics/files"].path == storage.uri("metrics/d/t")
    filed = read_metrics(storage, "metrics/d/t/event_date=2024-03-01/r1.csv")
    assert (filed["null_rate.email"]["value"], filed["rule.bad_ts"]["outcome"]) == ("0.5", PASSED)
