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


def test_a_big_batch_logs_each_rejected_file_and_its_progress_a_small_one_every_file(tmp_path):
    """Each log line is an event Dagster stores: past PER_FILE_LOG_MAX files a batch logs every file it
    did not ingest (with the reason), and its ingested files as progress, a line per tenth and the last."""
    from lake_assets.ingest.jobs import PER_FILE_LOG_MAX

    storage = LakeStorage(str(tmp_path / "big"))
    generate_logs(storage.write_bytes, start=dt.date(2024, 3, 1), days=16, records_per_day=40, bad_files=3,
                  seed=5, now=NOW)
    storage.write_text("raw/stray.txt", "not in a format folder\n")
    paths = [f.path for f in LANDING.raw_files(storage, claimed=())]
    assert len(paths) > PER_FILE_LOG_MAX
    lines: list[str] = []
    results = ingest_paths(LANDING, storage, paths, run_id="run", start=dt.date(2024, 1, 1), workers=1,
                           log=lines.append)
    not_ingested = {r.source: r.reason for r in results if r.status != "ingested"}
    assert len(not_ingested) == 4 and storage.list_files("raw") == []  # three unreadable, one stray; all taken
    for source, reason in not_ingested.items():  # (a file of no known format: the op warns of it)
        assert [x for x in lines if f"] {source}: rejected ({reason}: " in x] or reason == "unknown_format", source
    ingested = [x for x in lines if ": ingested, " in x]
    n = len(paths) - 1  # the stray file is not one of the batch's known files
    assert 9 <= len(ingested) <= 11 and lines[-1].startswith(f"[{n}/{n}] ")

    small = LakeStorage(str(tmp_path / "small"))
    generate_logs(small.write_bytes, start=dt.date(2024, 3, 1), days=2, records_per_day=40, bad_files=0,
                  seed=5, now=NOW)
    paths = [f.path for f in LANDING.raw_files(small, claimed=())]
    lines = []
    ingest_paths(LANDING, small, paths, run_id="run", start=dt.date(2024, 1, 1), workers=1, log=lines.append)
    assert sorted(x.split("] ")[1].split(":")[0] for x in lines) == sorted(paths)
