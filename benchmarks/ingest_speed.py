"""Ingestion throughput: MB/s of raw input, per core and on all cores, with peak memory.

Ingestion (the seed's Lambda: read every record, date it, route it into
``validated/``, manifests, archive) is the one stage of the lake that runs in
Python, record by record. This benchmark isolates it from Spark and Dagster so
its speed can be followed on its own (issue 14, part 3: at least 40 MB/s of raw
input on 2 cores).

It generates a logs lake of about ``--mb`` MB with the project's generator
(``benchmarks/logs_e2e.py``'s ``generate``: NDJSON, gzip JSON and XML files over
``--days`` days, with its share of bad records), then, ``--repeat`` times and
interleaved, ingests a fresh hard-linked copy of it with the product's own
function, ``lake_assets.ingest.jobs.ingest_paths`` (what the ingest op calls):

* one core: each format's files in one process (``workers=1``), timed per
  format, so MB/s per core says what a format costs;
* all cores: every file with ``workers=--workers`` (the op's parallel path,
  worker start-up included), which is the figure the target is about.

Seconds are those of the ``ingest_paths`` call (imports excluded); MB are bytes
of the raw files as stored (a gzip file counts its compressed size), as in
``logs_e2e.py``. CPU seconds are the measured process's and its workers'
(start-up included): on a shared machine they vary far less than wall time.
Peak RSS is the sampled peak of the measured process tree.

``--baseline-src DIR`` runs every case a second time, interleaved, with the
``lake_assets`` package found in ``DIR`` (e.g. an older checkout): before and
after on the same data and machine. ``--wait-idle`` waits for idle CPUs before
each run.

    .venv/bin/python benchmarks/ingest_speed.py [--mb 200] [--repeat 3] [--workers 2]
    .venv/bin/python benchmarks/ingest_speed.py --baseline-src /tmp/old-checkout --repeat 5
    .venv/bin/python benchmarks/ingest_speed.py --mb 50 --profile ndjson   # cProfile of one format, one core
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from logs_e2e import (  # noqa: E402  (the e2e benchmark's generator, copies and measuring, not a second set)
    _table,
    fresh_home,
    generate,
    link_tree,
    machine_info,
    run_measured,
    say,
)

FORMATS = ("ndjson", "json_gzip", "xml_errors")
#: Raw bytes per generated record, about (all formats as stored; from the e2e runs: 387 MB / 2.02 M).
BYTES_PER_RECORD = 200


def _format_files(lake: str, fmt: str) -> list[str]:
    folder = os.path.join(lake, "raw", fmt)
    return sorted(f"raw/{fmt}/{name}" for name in os.listdir(folder)) if os.path.isdir(folder) else []


def _bytes(lake: str, paths: list[str]) -> int:
    return sum(os.path.getsize(os.path.join(lake, p)) for p in paths)


# --------------------------------------------------------------------------- child (one measured process)


def child_main(argv: list[str]) -> int:
    """Ingest files of a lake with ``ingest_paths`` and print one JSON line: seconds, CPU, results."""
    p = argparse.ArgumentParser(prog="ingest_speed.py _child")
    p.add_argument("--lake", required=True)
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--formats", required=True)
    p.add_argument("--profile", action="store_true", help="cProfile the ingestion, print the top functions")
    args = p.parse_args(argv)

    from lake_assets import settings
    from lake_assets.domains.logs.assets import LANDING
    from lake_assets.ingest.jobs import ingest_paths
    from lake_assets.lake import LakeStorage

    storage = LakeStorage(args.lake)
    paths = [p for fmt in args.formats.split(",") for p in _format_files(args.lake, fmt)]
    size = _bytes(args.lake, paths)

    def usage():
        return resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)

    def cpu(u) -> float:
        return sum(x.ru_utime + x.ru_stime for x in u)

    before = usage()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    t0 = time.perf_counter()
    results = ingest_paths(LANDING, storage, paths, run_id=str(uuid.uuid4()), start=settings.start_date(),
                           workers=args.workers, parallel_min_bytes=0)
    seconds = time.perf_counter() - t0
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(30)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
    after = usage()
    bad = [f"{r.source}: {r.status} {r.reason} {r.detail}" for r in results if r.status != "ingested"]
    if bad:
        print("\n".join(bad[:10]), file=sys.stderr)
        return 1
    print(json.dumps({
        "seconds": seconds, "bytes": size, "files": len(paths), "records": sum(r.records for r in results),
        "cpu_seconds": cpu(after) - cpu(before),
        "maxrss_mb": after[0].ru_maxrss / 1024, "worker_maxrss_mb": after[1].ru_maxrss / 1024,
    }), flush=True)
    return 0


# --------------------------------------------------------------------------- harness


def _cpu_busy(seconds: float = 2.0) -> float:
    """Share of the machine's CPU time spent busy over ``seconds`` (from /proc/stat)."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values), values[3] + values[4]  # total, idle + iowait

    (total0, idle0), _, (total1, idle1) = sample(), time.sleep(seconds), sample()
    return 1 - (idle1 - idle0) / max(total1 - total0, 1)


def wait_idle(limit: float, busy_below: float = 0.1) -> float:
    """Wait (at most ``limit`` seconds) until other work leaves the CPUs idle; the seconds waited.

    On a shared machine another job's burst doubles a run's time; waiting for
    a quiet moment before each timed run keeps the samples comparable.
    """
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit and _cpu_busy() >= busy_below:
        pass
    return time.perf_counter() - t0


def run_case(name: str, template: str, work: str, logs: str, *, workers: int, formats: list[str],
             profile: bool = False, source: str | None = None, op: bool = False) -> dict:
    """One measured ingestion of ``formats`` on a fresh copy of the generated lake.

    ``source``: a folder holding another ``lake_assets`` package to measure instead of this
    tree's (it goes first on ``PYTHONPATH``), for before/after runs on the same data.
    ``op``: the ingest op itself, in a Dagster run (``logs_e2e.py``'s ``ingest`` child, every
    format), timed by its step: what ``lake run`` spends on ingestion.
    """
    lake = os.path.join(work, f"lake-{name}")
    shutil.rmtree(lake, ignore_errors=True)
    link_tree(template, lake)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))} if source else {}
    try:
        if op:
            env.update(LAKE_ROOT=lake, DAGSTER_HOME=fresh_home(os.path.join(work, f"home-{name}")),
                       LAKE_INGEST_WORKERS=str(workers))
            m = run_measured(name, [sys.executable, os.path.join(HERE, "logs_e2e.py"), "_child", "ingest"],
                             env=env, logs=logs)
            (run,) = m.report["runs"]
            paths = [p for fmt in FORMATS for p in _format_files(template, fmt)]
            report = {"seconds": run["steps"]["ingest_logs"], "bytes": _bytes(template, paths), "files": len(paths),
                      "records": None, "cpu_seconds": None, "maxrss_mb": 0, "worker_maxrss_mb": 0}
        else:
            cmd = [sys.executable, os.path.abspath(__file__), "_child", "--lake", lake, "--workers", str(workers),
                   "--formats", ",".join(formats)] + (["--profile"] if profile else [])
            m = run_measured(name, cmd, env=env, logs=logs)
            report = m.report
        return {**report, "wall_seconds": m.seconds, "peak_tree_rss_mb": m.peak_rss_mb, "log": m.log}
    finally:
        shutil.rmtree(lake, ignore_errors=True)
        shutil.rmtree(os.path.join(work, f"home-{name}"), ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_child"]:
        return child_main(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=float, default=200, help="raw MB to generate (all formats, as stored), about")
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--bad-share", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="ingest_paths' workers (cores) in the all-cores case")
    p.add_argument("--formats", default=",".join(FORMATS), help="formats to ingest, comma-separated")
    p.add_argument("--skip-per-format", action="store_true", help="leave out the one-core cases")
    p.add_argument("--op", action="store_true", help="also time the ingest op in a Dagster run (its step)")
    p.add_argument("--profile", choices=FORMATS, help="instead of timing: cProfile one format on one core")
    p.add_argument("--baseline-src", help="a folder holding another lake_assets package (e.g. an older "
                   "checkout): every case also runs with it, interleaved, on the same data")
    p.add_argument("--workdir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "lake-ingest-bench"))
    p.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                   help="before each timed run, wait up to this long for the CPUs to be idle (a shared machine)")
    p.add_argument("--json", help="also write the samples and summary to this file")
    p.add_argument("--keep", action="store_true", help="keep the generated raw files (reused by the next run)")
    args = p.parse_args(argv)
    formats = [f for f in args.formats.split(",") if f]

    work, logs = args.workdir, os.path.join(args.workdir, "logs")
    template = os.path.join(work, f"raw-{args.mb:g}mb-{args.days}d-{args.seed}")
    os.makedirs(logs, exist_ok=True)
    if not os.path.isdir(os.path.join(template, "raw")):
        records = int(args.mb * 2**20 / BYTES_PER_RECORD)
        say(f"generating about {args.mb:g} MB: {records:,} records over {args.days} day(s) ...")
        start = dt.date.today() - dt.timedelta(days=args.days)
        generate(template + ".tmp", start=start, days=args.days, records_per_day=max(1, records // args.days),
                 bad_share=args.bad_share, bad_files=0, seed=args.seed)
        os.replace(template + ".tmp", template)
    sizes = {f: _bytes(template, _format_files(template, f)) for f in formats}
    say("raw input: " + ", ".join(f"{f} {n / 2**20:.1f} MB ({len(_format_files(template, f))} files)"
                                  for f, n in sizes.items()))

    if args.profile:
        r = run_case("profile", template, work, logs, workers=1, formats=[args.profile], profile=True)
        say(f"{args.profile}: {r['bytes'] / 2**20 / r['seconds']:.1f} MB/s under cProfile; profile in {r['log']}")
        with open(r["log"], encoding="utf-8") as f:
            print(f.read())
        return 0

    sources = {"this tree": None} | ({"baseline": os.path.abspath(args.baseline_src)} if args.baseline_src else {})
    cases = [(f"{label}, {case}", workers, fmts, src, op) for case, workers, fmts, op in
             ([(f"1 core: {f}", 1, [f], False) for f in formats] if not args.skip_per_format else [])
             + [(f"{args.workers} workers: all", args.workers, formats, False)]
             + ([(f"{args.workers} workers: ingest op", args.workers, list(FORMATS), True)] if args.op else [])
             for label, src in sources.items()]
    samples: dict[str, list[dict]] = {name: [] for name, *_ in cases}
    load_start = os.getloadavg()
    for rep in range(args.repeat):
        for name, workers, fmts, src, op in cases:
            tag = "".join(c for c in name if c.isalnum() or c == "_")
            waited = wait_idle(args.wait_idle) if args.wait_idle else 0.0
            r = run_case(f"{tag}-{rep}", template, work, logs, workers=workers, formats=fmts, source=src, op=op)
            samples[name].append({**r, "waited_for_idle_s": waited})
            cpu = f", {r['cpu_seconds']:.2f} CPU s" if r["cpu_seconds"] is not None else ""
            say(f"{name}, run {rep + 1}: {r['bytes'] / 2**20 / r['seconds']:.1f} MB/s "
                f"({r['seconds']:.2f} s{cpu}, peak RSS {r['peak_tree_rss_mb']:.0f} MB"
                + (f", waited {waited:.0f} s for idle CPUs)" if args.wait_idle else ")"))

    rows, summary = [], {}
    for name, workers, *_ in cases:
        runs = samples[name]
        secs = [r["seconds"] for r in runs]
        mb = runs[0]["bytes"] / 2**20
        med = statistics.median(secs)
        in_op = runs[0]["cpu_seconds"] is None  # the op's process also runs Dagster: no CPU or RSS of its own
        summary[name] = {
            "workers": workers, "mb": mb, "records": runs[0]["records"], "median_seconds": med,
            "mb_per_s": mb / med, "mb_per_s_per_core": mb / med / workers,
            "cpu_seconds_median": None if in_op else statistics.median(r["cpu_seconds"] for r in runs),
            "peak_tree_rss_mb": max(r["peak_tree_rss_mb"] for r in runs),
            "max_process_rss_mb": None if in_op else max(max(r["maxrss_mb"], r["worker_maxrss_mb"]) for r in runs),
        }
        s = summary[name]
        rows.append([name, f"{mb:.1f}", "-" if in_op else f"{s['records']:,}", f"{min(secs):.2f}", f"{med:.2f}",
                     f"{s['mb_per_s']:.1f}", f"{s['mb_per_s_per_core']:.1f}",
                     "-" if in_op else f"{mb / s['cpu_seconds_median']:.1f}", f"{s['peak_tree_rss_mb']:.0f}",
                     "-" if in_op else f"{s['max_process_rss_mb']:.0f}"])
    m = machine_info()
    print(f"\nMachine: {m['nproc']} CPU(s) {m['cpu_model']}, Python {m['python']}; load average "
          f"{load_start[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end; {args.repeat} repetitions, interleaved\n")
    print(_table(["case", "raw MB", "records", "min s", "median s", "MB/s", "MB/s per core",
                  "MB per CPU s", "peak tree RSS MB", "max process RSS MB"], rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "machine": m, "samples": samples, "summary": summary}, f, indent=1)
    if not args.keep:
        shutil.rmtree(template, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
