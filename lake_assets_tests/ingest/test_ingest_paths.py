"""A batch of raw files: unknown folders rejected, the rest ingested, in parallel processes when large."""
from __future__ import annotations

import datetime as dt

from lake_assets.domains.logs.assets import LANDING
from lake_assets.domains.logs.generator import generate_logs
from lake_assets.ingest.jobs import ingest_paths
from lake_assets.lake import LakeStorage

NOW = dt.datetime.now(dt.timezone.utc)


def _lake(root: str) -> LakeStorage:
    storage = LakeStorage(root)
    generate_logs(storage.write_bytes, start=dt.date(2024, 3, 1), days=2, records_per_day=300, bad_files=3,
                  seed=3, now=NOW)
    storage.write_text("raw/stray.txt", "not in a format folder\n")
    return storage


def _outcome(storage: LakeStorage, results) -> tuple:
    by_file = sorted((r.source, r.status, r.reason, tuple(sorted(r.records_by_date.items()))) for r in results)
    validated = [(f.path, f.size) for f in storage.list_files("validated")]
    return by_file, validated


def test_parallel_processes_give_the_same_lake_as_one_process(tmp_path):
    one, two = _lake(str(tmp_path / "one")), _lake(str(tmp_path / "two"))
    paths = [f.path for f in LANDING.raw_files(one, claimed=())]
    sequential = ingest_paths(LANDING, one, paths, run_id="run", start=dt.date(2024, 1, 1), workers=1)
    parallel = ingest_paths(LANDING, two, paths, run_id="run", start=dt.date(2024, 1, 1), workers=2,
                            parallel_min_bytes=0)
    assert _outcome(one, sequential) == _outcome(two, parallel)
    assert {r.status for r in parallel} == {"ingested", "rejected"}
    assert [r.reason for r in parallel if r.source == "raw/stray.txt"] == ["unknown_format"]
    assert one.list_files("raw") == two.list_files("raw") == []
