"""End-to-end benchmark of the logs lake against two PySpark jobs and DuckDB.

One invocation generates a lake of the chosen size, then times, each ``--repeat``
times and interleaved so that machine noise spreads evenly:

* ours: ``lake run`` (ingest + processed + gold through Dagster) in a fresh
  ``DAGSTER_HOME`` on a fresh copy of the raw files, with per-stage times taken
  from the run's step events (``lake_assets.pipeline.run_domain``);
* ``baselines/plain_spark_job.py``: the strict one: our parse, rules, writes and
  gold re-implemented as one Spark application;
* ``baselines/glue_style_spark_job.py``: the typical one: what a Glue developer
  writes (native JSON and XML readers with an explicit schema, try_cast, one filter);
* ``baselines/duckdb_job.py``: the same job on DuckDB, the single-node reference.

Each of these Spark runs writes Spark's event log, from which the Spark jobs it
used are counted. It refuses to print a speed until the four agree on every gold
number (the Glue-style job's leniencies do not show on the generator's data: see
benchmarks/README.md). Then it times a 30-day backfill as one run against 30
one-day runs, one new day on a 30-day lake against the same day on an empty
lake, and the peak memory of ingesting one large file per raw format. Results go
to ``benchmarks/results/``.

    .venv/bin/python benchmarks/logs_e2e.py [--quick] [--records N --days N --repeat N] [--skip-backfill]

Every measured command runs as a subprocess; its peak memory is the largest sum
of RSS over its process tree (the JVM included), sampled from /proc.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gzip
import importlib.metadata
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(HERE)
BASELINES = os.path.join(HERE, "baselines")
PAGE = os.sysconf("SC_PAGE_SIZE")
FORMAT_DIRS = ("ndjson", "json_gzip", "xml_errors")
INT_FIELDS = ("requests", "client_errors", "server_errors", "unique_users", "unique_clients", "bytes_sent",
              "error_events", "critical_events")
PCT_FIELDS = ("p50_latency_ms", "p95_latency_ms")
PCT_TOLERANCE = 0.01


def say(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


# --------------------------------------------------------------------------- measuring


def _children() -> dict[int, list[int]]:
    """ppid -> pids, from one scan of /proc (no psutil in the venv)."""
    out: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        out.setdefault(ppid, []).append(int(name))
    return out


def tree_rss(root: int) -> int:
    """Bytes resident in a process and its descendants, now, without counting a JVM twice.

    Every descendant's RSS is summed, but a JVM without Hadoop's native
    library shells out (``chmod`` for every file Spark writes, ``getconf``...), and
    until its ``exec`` each such child is a clone of the JVM whose RSS is the JVM's:
    sampled at that instant, the tree counts the JVM twice (measured: 11.0 GB for a
    plain Spark job whose JVM peaked at 4.7 GB). A child still running its parent's
    ``java`` image is therefore skipped; once it has exec'd, it counts.
    """
    kids = _children()
    total, stack = 0, [(root, None)]
    while stack:
        pid, parent_exe = stack.pop()
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            exe = None
        if not (parent_exe and exe == parent_exe and os.path.basename(exe) == "java"):
            try:
                with open(f"/proc/{pid}/statm") as f:
                    total += int(f.read().split()[1]) * PAGE
            except (OSError, IndexError, ValueError):
                pass
        stack.extend((k, exe) for k in kids.get(pid, []))
    return total


@dataclasses.dataclass
class Measured:
    seconds: float
    peak_rss_mb: float
    returncode: int
    report: dict  # the last JSON line the command printed on stdout
    log: str  # where its stdout/stderr went


def run_measured(name: str, cmd: list[str], *, env: dict[str, str] | None = None, logs: str,
                 interval: float = 0.2) -> Measured:
    """Run a command to its end: wall seconds, peak process-tree RSS, and its JSON report."""
    os.makedirs(logs, exist_ok=True)
    out_path = os.path.join(logs, f"{name}.out")
    err_path = os.path.join(logs, f"{name}.err")
    peak = 0
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env={**os.environ, **(env or {})}, cwd=PROJECT)
        done = threading.Event()

        def sample():
            nonlocal peak
            while not done.is_set():
                peak = max(peak, tree_rss(proc.pid))
                done.wait(interval)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rc = proc.wait()
        seconds = time.perf_counter() - t0
        done.set()
        sampler.join()
    report: dict = {}
    with open(out_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("{"):
                try:
                    report = json.loads(line)
                except ValueError:
                    pass
    if rc != 0:
        with open(err_path, encoding="utf-8", errors="replace") as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"{name} failed (exit {rc}); see {err_path}\n{tail}")
    return Measured(seconds, peak / 2**20, rc, report, err_path)


def summary(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "all": values} if values else {}


def event_log_env(folder: str) -> dict[str, str]:
    """Environment that makes a Spark process write its event log into ``folder``, uncompressed.

    Through ``SPARK_CONF_*``, the variables our pipeline already reads (lake_assets/spark.py) and
    the Spark baselines read too, so no product code changes and every Spark run is set alike.
    """
    os.makedirs(folder, exist_ok=True)
    return {"SPARK_CONF_spark__eventLog__enabled": "true",
            "SPARK_CONF_spark__eventLog__dir": "file://" + os.path.abspath(folder),
            "SPARK_CONF_spark__eventLog__compress": "false"}


def spark_jobs(folder: str) -> int:
    """Spark jobs started by every application whose event log is in ``folder``.

    One ``SparkListenerJobStart`` line per job, in every event file (Spark 4 writes a folder per
    application, ``eventlog_v2_<app>/events_<n>_<app>``; a run still going, or killed, counts too).
    """
    marker = b'{"Event":"SparkListenerJobStart"'
    jobs = 0
    for d, _, files in os.walk(folder):
        for name in files:
            if name.startswith(".") or name.startswith("appstatus"):
                continue
            with open(os.path.join(d, name), "rb") as f:
                jobs += sum(1 for line in f if line.startswith(marker))
    return jobs


# --------------------------------------------------------------------------- files


def generate(raw_parent: str, *, start: dt.date, days: int, records_per_day: int, bad_share: float,
             bad_files: int, seed: int) -> dict:
    """Generated raw files under ``raw_parent/raw/``; what was written, as a dict."""
    from lake_assets.domains.logs.generator import generate_logs

    def write(rel: str, data: bytes) -> None:
        path = os.path.join(raw_parent, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)

    gen = generate_logs(write, start=start, days=days, records_per_day=records_per_day, bad_share=bad_share,
                        bad_files=bad_files, seed=seed, now=dt.datetime.now(dt.timezone.utc))
    out = dataclasses.asdict(gen)
    out["reason_counts"] = dict(gen.reason_counts)
    out["bytes"] = folder_bytes(os.path.join(raw_parent, "raw"))
    return out


def folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def link_tree(src: str, dst: str, exclude: set[str] = frozenset()) -> None:
    """A copy that costs nothing: hard links. Safe because the lake never rewrites a file in place
    (every write is a new file renamed over the old name), so the source stays as it was."""
    for d, _, files in os.walk(src):
        rel = os.path.relpath(d, src)
        os.makedirs(os.path.join(dst, rel), exist_ok=True)
        for f in files:
            if os.path.normpath(os.path.join(rel, f)) in exclude:
                continue
            os.link(os.path.join(d, f), os.path.join(dst, rel, f))


def fresh_home(path: str) -> str:
    """An empty Dagster instance folder with the ``dagster.yaml`` ``lake`` itself writes."""
    from lake_assets.instance import ensure_instance_yaml

    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    ensure_instance_yaml(path)
    return path


def parquet_rows(root: str) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(os.path.join(d, f)).metadata.num_rows
               for d, _, fs in os.walk(root) for f in fs if f.endswith(".parquet") and not f.startswith((".", "_")))


def row_counts(root: str) -> dict[str, int | None]:
    """Rows accepted into processed, and rejected (None from a job that does not write its rejects)."""
    rejected = os.path.join(root, "rejected/data_quality")
    return {"valid_access": parquet_rows(os.path.join(root, "processed/logs/log_type=access")),
            "valid_error": parquet_rows(os.path.join(root, "processed/logs/log_type=error")),
            "rejected": parquet_rows(rejected) if os.path.isdir(rejected) else None}


def count_differences(counts: dict[str, dict]) -> dict[str, dict]:
    """Of the row counts per engine, those that are not the same for every engine that reports them."""
    out = {}
    for key in ("valid_access", "valid_error", "rejected"):
        values = {engine: c[key] for engine, c in counts.items() if engine != "gold_rows" and c[key] is not None}
        if len(set(values.values())) > 1:
            out[key] = values
    return out


# --------------------------------------------------------------------------- gold


def read_gold(root: str, dates: set[str] | None = None) -> dict[tuple[str, str], dict]:
    """analytics/daily_activity as {(date, service): row}; the date from the path when not a column."""
    import pyarrow.parquet as pq

    rows: dict[tuple[str, str], dict] = {}
    base = os.path.join(root, "analytics", "daily_activity")
    for d, _, files in os.walk(base):
        for f in files:
            if not f.endswith(".parquet") or f.startswith((".", "_")):
                continue
            table = pq.ParquetFile(os.path.join(d, f)).read()
            m = re.search(r"date=(\d{4}-\d{2}-\d{2})", d)
            for row in table.to_pylist():
                date = str(row.get("date") or (m.group(1) if m else ""))
                if dates is None or date in dates:
                    rows[(date, row["service"])] = row
    return rows


def compare_gold(ours: dict, other: dict, name: str, limit: int = 20) -> list[str]:
    """Every difference between two gold tables: counts exact, percentiles within 1 %."""
    problems = []
    for key in sorted(set(ours) | set(other)):
        if key not in ours or key not in other:
            problems.append(f"{name}: row {key} only in {'ours' if key in ours else name}")
            continue
        a, b = ours[key], other[key]
        for col in INT_FIELDS:
            if int(a[col] or 0) != int(b[col] or 0):
                problems.append(f"{name}: {key} {col} ours={a[col]} {name}={b[col]}")
        for col in PCT_FIELDS:
            x, y = a[col], b[col]
            if (x is None) != (y is None) or (x is not None and abs(x - y) > PCT_TOLERANCE * max(abs(x), abs(y))):
                problems.append(f"{name}: {key} {col} ours={x} {name}={y}")
    return problems[:limit] + ([f"... {len(problems) - limit} more"] if len(problems) > limit else [])


# --------------------------------------------------------------------------- our pipeline


def stage_of(step: str) -> str:
    """Group Dagster step keys into the pipeline's stages."""
    if step.startswith("ingest_"):
        return "ingestion"
    if step in ("processed_logs", "daily_activity"):
        return "processed" if step == "processed_logs" else "gold"
    if step.startswith(("processed_logs_", "rejected_log_records_")):  # asset checks: <asset>_<check>
        return "processed_checks"
    if step.startswith("daily_activity_"):
        return "gold_checks"
    return "other"


def stages(runs: list[dict]) -> dict[str, float]:
    out: dict[str, float] = {}
    for run in runs:
        for step, seconds in run["steps"].items():
            out[stage_of(step)] = out.get(stage_of(step), 0.0) + seconds
    return out


def lake_env(lake: str, home: str, args) -> dict[str, str]:
    return {"LAKE_ROOT": lake, "DAGSTER_HOME": home, "SPARK_MASTER": args.master,
            "PYTHONPATH": PROJECT + os.pathsep + os.environ.get("PYTHONPATH", "")}


def child(*argv: str) -> list[str]:
    return [sys.executable, os.path.abspath(__file__), "_child", *argv]


def run_ours(name: str, lake: str, home: str, args, logs: str, event_log: str | None = None,
             env: dict[str, str] | None = None) -> dict:
    """``lake run`` on a lake, in its own process: wall time, peak RSS, stage times, and with
    ``event_log`` (a folder) the Spark jobs it used. ``env`` adds variables for the run (the
    daily-batch benchmark points ``ORDERS_DB_URL`` at a copy of a generated orders source,
    since ``home`` starts empty)."""
    env = {**lake_env(lake, fresh_home(home), args), **(event_log_env(event_log) if event_log else {}),
           **(env or {})}
    m = run_measured(name, child("lake-run"), env=env, logs=logs)
    runs = m.report["runs"]
    failed = [r for r in runs if not r["success"]]
    if failed:
        raise RuntimeError(f"{name}: run(s) failed: {failed[:2]} (log {m.log})")
    st = stages(runs)
    st["outside_steps"] = m.seconds - sum(st.values())
    return {"seconds": m.seconds, "peak_rss_mb": m.peak_rss_mb, "stages": st, "runs": runs,
            "in_process_seconds": m.report["seconds"], **({"spark_jobs": spark_jobs(event_log)} if event_log else {})}


# --------------------------------------------------------------------------- sections


#: The baselines, in the order they run after ours in each repetition: (name, script, is it Spark).
BASELINE_JOBS = (("plain_spark", "plain_spark_job.py", True), ("glue_spark", "glue_style_spark_job.py", True),
                 ("duckdb", "duckdb_job.py", False))
ENGINE_LABELS = {"ours": "ours (lake run)", "plain_spark": "strict Spark job", "glue_spark": "Glue-style Spark job",
                 "duckdb": "DuckDB job"}


def run_baseline(name: str, script: str, spark: bool, input_root: str, out: str, args, logs: str,
                 event_log: str) -> dict:
    """One baseline job in its own process: wall time, peak RSS, its phases, and Spark jobs for a Spark one."""
    extra = ["--master", args.master] if spark else ["--threads", str(args.threads)]
    m = run_measured(name, [sys.executable, os.path.join(BASELINES, script), "--input", input_root,
                            "--output", out, *extra], env=event_log_env(event_log) if spark else None, logs=logs)
    return {"seconds": m.seconds, "peak_rss_mb": m.peak_rss_mb, "phases": m.report.get("phases", {}),
            **({"spark_jobs": spark_jobs(event_log)} if spark else {})}


def bench_e2e(args, work: str, logs: str) -> dict:
    """Ours vs the strict and the Glue-style Spark jobs vs DuckDB on one generated lake, interleaved;
    gold must agree before any speed counts."""
    gen_dir = os.path.join(work, "e2e-gen")
    say(f"generating {args.records:,} records over {args.days} day(s) ...")
    t = time.perf_counter()
    gen = generate(gen_dir, start=args.start, days=args.days, records_per_day=args.records // args.days,
                   bad_share=args.bad_share, bad_files=args.bad_files, seed=args.seed)
    say(f"generated {gen['files']} files, {gen['records']:,} records, {gen['bytes'] / 2**20:.1f} MB "
        f"({len(gen['bad_files'])} unreadable) in {time.perf_counter() - t:.1f}s")
    raw = os.path.join(gen_dir, "raw")
    # The baselines read raw/ directly: give them every file our pipeline ingests, none it rejects whole.
    baseline_input = os.path.join(work, "e2e-baseline-input")
    link_tree(raw, baseline_input, exclude={os.path.relpath(p, "raw") for p in gen["bad_files"]})

    samples: dict[str, list[dict]] = {"ours": [], **{engine: [] for engine, _, _ in BASELINE_JOBS}}
    problems: list[str] = []
    counts: dict[str, dict] = {}
    event_logs = os.path.join(work, "e2e-spark-events")  # megabytes per run: kept only with --keep
    for rep in range(args.repeat):
        lake = os.path.join(work, f"e2e-ours-{rep}")
        link_tree(raw, os.path.join(lake, "raw"))
        say(f"repetition {rep + 1}/{args.repeat}: our pipeline (lake run) ...")
        samples["ours"].append(run_ours(f"e2e-ours-{rep}", lake, os.path.join(work, f"e2e-home-{rep}"), args, logs,
                                        event_log=os.path.join(event_logs, f"e2e-ours-{rep}")))
        outputs = {"ours": lake}
        for engine, script, spark in BASELINE_JOBS:
            name, out = f"e2e-{engine}-{rep}", os.path.join(work, f"e2e-{engine}-{rep}")
            say(f"repetition {rep + 1}/{args.repeat}: {engine} ...")
            samples[engine].append(run_baseline(name, script, spark, baseline_input, out, args, logs,
                                                event_log=os.path.join(event_logs, name)))
            outputs[engine] = out
        gold = {k: read_gold(v) for k, v in outputs.items()}
        for engine, _, _ in BASELINE_JOBS:  # the Glue-style job too: see README, "The Glue-style job's gold"
            problems += compare_gold(gold["ours"], gold[engine], engine)
        counts = {k: row_counts(v) for k, v in outputs.items()}
        counts["gold_rows"] = {k: len(v) for k, v in gold.items()}
        if not args.keep:
            for path in outputs.values():
                shutil.rmtree(path, ignore_errors=True)
        if problems:
            break
    return {"generated": gen, "samples": samples, "gold_problems": problems, "row_counts": counts,
            "records": gen["records"], "input_mb": gen["bytes"] / 2**20}


def _build(name: str, lake: str, home: str, mode: str, first: dt.date, last: dt.date, args, logs: str) -> dict:
    m = run_measured(name, child("build", "--mode", mode, "--first", first.isoformat(), "--last", last.isoformat()),
                     env=lake_env(lake, fresh_home(home), args), logs=logs)
    runs = m.report["runs"]
    if not all(r["success"] for r in runs):
        raise RuntimeError(f"{name}: a run failed (log {m.log})")
    return {"seconds": m.seconds, "peak_rss_mb": m.peak_rss_mb, "runs": len(runs), "stages": stages(runs),
            "in_process_seconds": m.report["seconds"]}


def prepare_month(args, work: str, logs: str) -> dict:
    """A lake holding ``--backfill-days`` days, ingested (validated/) but not yet built."""
    gen_dir = os.path.join(work, "month-gen")
    say(f"generating {args.backfill_days} days x {args.backfill_records_per_day:,} records ...")
    gen = generate(gen_dir, start=args.month_start, days=args.backfill_days,
                   records_per_day=args.backfill_records_per_day, bad_share=args.bad_share,
                   bad_files=args.bad_files, seed=args.seed + 1)
    template = os.path.join(work, "month-ingested")
    link_tree(os.path.join(gen_dir, "raw"), os.path.join(template, "raw"))
    say("ingesting it (not timed as part of the backfill) ...")
    m = run_measured("month-ingest", child("ingest"), env=lake_env(template, fresh_home(
        os.path.join(work, "month-ingest-home")), args), logs=logs)
    return {"template": template, "generated": gen, "ingest_seconds": m.seconds,
            "first": args.month_start, "last": args.month_start + dt.timedelta(days=args.backfill_days - 1)}


def bench_backfill(args, month: dict, work: str, logs: str) -> dict:
    """One run over the whole range (BackfillPolicy.single_run) against one run per day."""
    out: dict[str, list] = {"range": [], "daily": []}
    problems: list[str] = []
    for rep in range(args.repeat):
        golds = {}
        for mode in ("range", "daily"):
            lake = os.path.join(work, f"backfill-{mode}-{rep}")
            link_tree(month["template"], lake)
            say(f"backfill repetition {rep + 1}/{args.repeat}: {mode} ...")
            out[mode].append(_build(f"backfill-{mode}-{rep}", lake, os.path.join(work, f"backfill-home-{mode}-{rep}"),
                                    mode, month["first"], month["last"], args, logs))
            golds[mode] = read_gold(lake)
            if mode == "range" and rep == args.repeat - 1:
                month["built"] = lake  # the 30-day lake the incremental test starts from
            else:
                shutil.rmtree(lake, ignore_errors=True)
        problems += compare_gold(golds["range"], golds["daily"], "daily")
    return {"days": args.backfill_days, "records_per_day": args.backfill_records_per_day,
            "ingest_seconds": month["ingest_seconds"], "samples": out, "gold_problems": problems}


def bench_incremental(args, month: dict, work: str, logs: str) -> dict:
    """One new day's files: ``lake run`` on the 30-day lake against the same on an empty lake."""
    if "built" not in month:
        lake = os.path.join(work, "month-built")
        link_tree(month["template"], lake)
        say("building the month once (untimed) for the incremental test ...")
        _build("month-build", lake, os.path.join(work, "month-build-home"), "range", month["first"],
               month["last"], args, logs)
        month["built"] = lake
    new_day = month["last"] + dt.timedelta(days=1)
    gen_dir = os.path.join(work, "newday-gen")
    gen = generate(gen_dir, start=new_day, days=1, records_per_day=args.backfill_records_per_day,
                   bad_share=args.bad_share, bad_files=0, seed=args.seed + 2)
    out: dict[str, list] = {"on_month": [], "on_empty": []}
    problems: list[str] = []
    for rep in range(args.repeat):
        golds = {}
        for variant in ("on_month", "on_empty"):
            lake = os.path.join(work, f"incr-{variant}-{rep}")
            if variant == "on_month":
                link_tree(month["built"], lake)
            link_tree(os.path.join(gen_dir, "raw"), os.path.join(lake, "raw"))
            say(f"incremental repetition {rep + 1}/{args.repeat}: {variant} ...")
            home = os.path.join(work, f"incr-home-{variant}-{rep}")
            out[variant].append(run_ours(f"incr-{variant}-{rep}", lake, home, args, logs))
            golds[variant] = read_gold(lake, {new_day.isoformat()})
            shutil.rmtree(lake, ignore_errors=True)
        problems += compare_gold(golds["on_month"], golds["on_empty"], "on_empty")
    return {"new_day": new_day.isoformat(), "records": gen["records"], "samples": out, "gold_problems": problems}


def make_big_files(folder: str, target: int, args) -> dict[str, dict]:
    """One large raw file per format, written by streaming: a generated base chunk repeated to size.

    Only the base (a few tens of MB at most) is ever held; the large files are
    appended to chunk by chunk. ``target`` is the uncompressed size of each.
    """
    base_dir = os.path.join(folder, "base")
    base_records = max(2_000, min(target // 330, 150_000))
    generate(base_dir, start=args.start, days=7, records_per_day=base_records // 7, bad_share=args.bad_share,
             bad_files=0, seed=args.seed + 3)
    json_lines = os.path.join(folder, "base-json-elements.txt")  # access records that are JSON values
    xml_elements = os.path.join(folder, "base-xml-elements.txt")
    with open(json_lines, "w", encoding="utf-8") as jl, open(xml_elements, "w", encoding="utf-8") as xl:
        for d, _, files in os.walk(os.path.join(base_dir, "raw")):
            for f in sorted(files):
                path = os.path.join(d, f)
                if f.endswith(".xml"):
                    text = open(path, encoding="utf-8").read()
                    body = text.split("<errors>\n", 1)[1].rsplit("</errors>", 1)[0]
                    xl.write(body if body.endswith("\n") else body + "\n")
                    continue
                text = gzip.open(path, "rt", encoding="utf-8").read() if f.endswith(".gz") else \
                    open(path, encoding="utf-8").read()
                for line in text.splitlines():
                    line = line.rstrip(",")
                    if line.strip() in ("", "[", "]"):
                        continue
                    try:
                        json.loads(line)
                    except ValueError:
                        continue  # a JSON array holds JSON values only
                    jl.write(line + "\n")
    out = {}
    raw = os.path.join(folder, "raw")

    def cycle(path: str):
        """Lines of a base file, over and over."""
        while True:
            with open(path, encoding="utf-8") as f:
                yield from f

    # NDJSON: the JSON lines repeated.
    nd = os.path.join(raw, "ndjson", "big.ndjson")
    os.makedirs(os.path.dirname(nd), exist_ok=True)
    n, size = 0, 0
    with open(nd, "w", encoding="utf-8") as f:
        for line in cycle(json_lines):
            f.write(line)
            n, size = n + 1, size + len(line.encode())
            if size >= target:
                break
    out["ndjson"] = {"path": "raw/ndjson/big.ndjson", "records": n, "bytes": os.path.getsize(nd),
                     "inflated_bytes": size}
    # gzip: one JSON array, the hardest case for a streaming reader.
    gz = os.path.join(raw, "json_gzip", "big.json.gz")
    os.makedirs(os.path.dirname(gz), exist_ok=True)
    n, size = 0, 2
    with gzip.open(gz, "wt", encoding="utf-8", compresslevel=1) as f:
        f.write("[\n")
        for line in cycle(json_lines):
            piece = ("" if n == 0 else ",\n") + line.rstrip("\n")
            f.write(piece)
            n, size = n + 1, size + len(piece.encode())
            if size >= target:
                break
        f.write("\n]\n")
    out["json_gzip"] = {"path": "raw/json_gzip/big.json.gz", "records": n, "bytes": os.path.getsize(gz),
                        "inflated_bytes": size + 3}
    # XML: <error> elements repeated inside one <errors> root (elements may span lines).
    xml = os.path.join(raw, "xml_errors", "big.xml")
    os.makedirs(os.path.dirname(xml), exist_ok=True)
    with open(xml, "w", encoding="utf-8") as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n<errors>\n')
        size, n = 0, 0
        for line in cycle(xml_elements):
            starts_element = line.startswith("  <")  # continuation lines of a message do not
            if starts_element and size >= target:
                break
            f.write(line)
            size += len(line.encode())
            n += starts_element
        f.write("</errors>\n")
    out["xml_errors"] = {"path": "raw/xml_errors/big.xml", "records": n, "bytes": os.path.getsize(xml),
                         "inflated_bytes": os.path.getsize(xml)}
    shutil.rmtree(base_dir, ignore_errors=True)
    return out


def bench_memory(args, work: str, logs: str) -> dict:
    """Peak RSS of ingesting one large file per format with ``router.ingest_file``, in its own process."""
    folder = os.path.join(work, "memory")
    target = int(args.memory_file_mb * 2**20)
    say(f"writing one {args.memory_file_mb:g} MB file per format (streamed) ...")
    files = make_big_files(folder, target, args)
    results = {}
    for fmt, info in files.items():
        lake = os.path.join(work, f"memory-lake-{fmt}")
        os.makedirs(os.path.join(lake, os.path.dirname(info["path"])), exist_ok=True)
        os.rename(os.path.join(folder, info["path"]), os.path.join(lake, info["path"]))
        say(f"ingesting {info['path']} ({info['bytes'] / 2**20:.0f} MB on disk) ...")
        m = run_measured(f"memory-{fmt}", child("ingest-file", "--path", info["path"], "--format", fmt),
                         env=lake_env(lake, fresh_home(os.path.join(work, "memory-home")), args), logs=logs)
        if m.report.get("status") != "ingested":
            raise RuntimeError(f"memory test: {fmt} file was not ingested: {m.report}")
        results[fmt] = {**info, "seconds": m.seconds, "peak_tree_rss_mb": m.peak_rss_mb,
                        "maxrss_mb": m.report["maxrss_mb"], "rss_after_imports_mb": m.report["rss_after_imports_mb"],
                        "records_routed": m.report["records"], "ok": m.report["maxrss_mb"] < args.memory_target_mb}
        shutil.rmtree(lake, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    return {"file_mb": args.memory_file_mb, "target_mb": args.memory_target_mb, "files": results}


# --------------------------------------------------------------------------- children (run as subprocesses)


def _runs_json(runs) -> list[dict]:
    return [{"job": r.job, "run_id": r.run_id, "success": r.success, "partitions": r.partitions,
             "failures": r.failures[:3], "failed_checks": r.failed_checks,
             "steps": {s.step: s.seconds for s in r.steps}} for r in runs]


def _step_seconds(result) -> dict[str, float]:
    """Seconds per step of an executed run, from its STEP_SUCCESS/STEP_FAILURE events."""
    from dagster import DagsterEventType

    out = {}
    for event in result.all_events:
        if event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            duration = getattr(event.event_specific_data, "duration_ms", None)
            if duration is not None:
                out[event.step_key] = duration / 1000
    return out


def child_main(argv: list[str]) -> int:
    """Entry points the harness runs in a subprocess, each printing one JSON line."""
    p = argparse.ArgumentParser(prog="logs_e2e.py _child")
    sub = p.add_subparsers(dest="what", required=True)
    sub.add_parser("lake-run")
    sub.add_parser("ingest")
    b = sub.add_parser("build")
    b.add_argument("--mode", choices=["range", "daily"], required=True)
    b.add_argument("--first", required=True)
    b.add_argument("--last", required=True)
    i = sub.add_parser("ingest-file")
    i.add_argument("--path", required=True)
    i.add_argument("--format", required=True)
    args = p.parse_args(argv)
    t0 = time.perf_counter()

    if args.what == "ingest-file":
        from lake_assets import settings
        from lake_assets.domains.logs import contract
        from lake_assets.ingest.router import ingest_file
        from lake_assets.lake import LakeStorage

        before = tree_rss(os.getpid()) / 2**20
        start = settings.start_date()
        result = ingest_file(LakeStorage(settings.lake_root()), args.path, contract.FORMATS[args.format],
                             lambda r, ts: contract.routing_date(r, ts, start), run_id=str(uuid.uuid4()))
        print(json.dumps({"status": result.status, "reason": result.reason, "records": result.records,
                          "rss_after_imports_mb": before,
                          "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                          "seconds": time.perf_counter() - t0}), flush=True)
        return 0

    from dagster import DagsterInstance
    from lake_assets.pipeline import range_tags

    if args.what == "lake-run":
        from lake_assets.cli import run_lake

        domains = run_lake(progress=lambda m: print(m, file=sys.stderr, flush=True))
        runs = [r for d in domains for r in d.runs]
        print(json.dumps({"seconds": time.perf_counter() - t0, "runs": _runs_json(runs),
                          "files": sum(d.files for d in domains)}), flush=True)
        return 0

    from lake_assets.definitions import build_defs
    from lake_assets.pipeline import QUIET

    defs = build_defs()
    instance = DagsterInstance.get()
    runs = []
    if args.what == "ingest":
        result = defs.resolve_job_def("ingest_logs_job").execute_in_process(
            run_config={**QUIET, "ops": {"ingest_logs": {"config": {"paths": []}}}}, instance=instance,
            raise_on_error=False)
        runs.append({"job": "ingest_logs_job", "success": result.success, "steps": _step_seconds(result)})
    else:
        job = defs.resolve_job_def("logs_pipeline_job")
        first, last = dt.date.fromisoformat(args.first), dt.date.fromisoformat(args.last)
        if args.mode == "range":
            batches = [{"tags": range_tags(args.first, args.last)}]
        else:
            batches = [{"partition_key": (first + dt.timedelta(days=i)).isoformat()}
                       for i in range((last - first).days + 1)]
        for kwargs in batches:
            t = time.perf_counter()
            result = job.execute_in_process(run_config=QUIET, instance=instance, raise_on_error=False, **kwargs)
            runs.append({"job": "logs_pipeline_job", "success": result.success, "steps": _step_seconds(result),
                         "seconds": time.perf_counter() - t})
    print(json.dumps({"seconds": time.perf_counter() - t0, "runs": runs}), flush=True)
    return 0


# --------------------------------------------------------------------------- report


def machine_info() -> dict:
    def version(pkg):
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None

    try:
        java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    except (OSError, IndexError):
        java = None
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = int(next(line for line in f if line.startswith("MemTotal")).split()[1]) // 1024
    except (OSError, StopIteration):
        pass
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(), "cpu_model": cpu,
            "mem_total_mb": mem, "python": platform.python_version(), "java": java, "platform": platform.platform(),
            **{pkg: version(pkg) for pkg in ("pyspark", "duckdb", "pyarrow", "dagster")},
            "load_average_at_start": os.getloadavg()}


def _table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]])


def jobs_text(counts: list[int] | None) -> str:
    """Spark jobs over repetitions: one number when they agree, else min-max; "-" for no Spark."""
    if not counts:
        return "-"
    return str(counts[0]) if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}"


def e2e_report(e2e: dict) -> tuple[str, dict]:
    """The end-to-end table; stats per engine, plus ``ratios``: ours' median over each baseline's."""
    stats = {}
    for engine, samples in e2e["samples"].items():
        secs = summary([s["seconds"] for s in samples])
        stats[engine] = {"seconds": secs, "peak_rss_mb": max(s["peak_rss_mb"] for s in samples),
                         "records_per_s": e2e["records"] / secs["median"],
                         "input_mb_per_s": e2e["input_mb"] / secs["median"],
                         "spark_jobs": [s["spark_jobs"] for s in samples if "spark_jobs" in s] or None}
    ours = stats["ours"]["seconds"]["median"]
    for engine in stats:
        stats[engine]["ours_over_this"] = ours / stats[engine]["seconds"]["median"]
    rows = [[ENGINE_LABELS[e], f"{s['seconds']['min']:.1f}", f"{s['seconds']['median']:.1f}",
             f"{s['records_per_s']:,.0f}", f"{s['input_mb_per_s']:.2f}", f"{s['peak_rss_mb']:.0f}",
             jobs_text(s["spark_jobs"]), f"{s['ours_over_this']:.2f}"] for e, s in stats.items()]
    text = _table(["engine", "min s", "median s", "records/s", "input MB/s", "peak RSS MB", "Spark jobs",
                   "ours/this"], rows)
    ratios = {f"ours/{e}": stats[e]["ours_over_this"] for e in stats if e != "ours"}
    text += "\n" + ", ".join(f"ours/{ENGINE_LABELS[e]}: {stats[e]['ours_over_this']:.2f}x"
                             for e in stats if e != "ours")
    stats["ratios"] = ratios
    st_keys = ["ingestion", "processed", "processed_checks", "gold", "gold_checks", "outside_steps"]
    per = {k: statistics.median(s["stages"].get(k, 0.0) for s in e2e["samples"]["ours"]) for k in st_keys}
    total = sum(per.values()) or 1
    text += "\n\nOur pipeline by stage (median seconds over repetitions, from the runs' step events):\n"
    text += _table(["stage", "seconds", "share"], [[k, f"{v:.1f}", f"{100 * v / total:.0f}%"] for k, v in per.items()])
    stats["ours"]["stages_median"] = per
    return text, stats


def backfill_report(bf: dict) -> tuple[str, dict]:
    rng = summary([s["seconds"] for s in bf["samples"]["range"]])
    daily = summary([s["seconds"] for s in bf["samples"]["daily"]])
    stats = {"range_seconds": rng, "daily_seconds": daily, "daily_over_range": daily["median"] / rng["median"]}
    text = _table(["backfill of %d days" % bf["days"], "runs", "min s", "median s", "peak RSS MB"], [
        ["one run over the range", 1, f"{rng['min']:.1f}", f"{rng['median']:.1f}",
         f"{max(s['peak_rss_mb'] for s in bf['samples']['range']):.0f}"],
        ["one run per day", bf["days"], f"{daily['min']:.1f}", f"{daily['median']:.1f}",
         f"{max(s['peak_rss_mb'] for s in bf['samples']['daily']):.0f}"],
    ]) + f"\nper-day runs / one range run: {stats['daily_over_range']:.2f}x"
    return text, stats


def incremental_report(inc: dict) -> tuple[str, dict]:
    on_month = summary([s["seconds"] for s in inc["samples"]["on_month"]])
    on_empty = summary([s["seconds"] for s in inc["samples"]["on_empty"]])
    stats = {"on_month_seconds": on_month, "on_empty_seconds": on_empty,
             "month_over_empty": on_month["median"] / on_empty["median"]}
    text = _table([f"lake run, one new day ({inc['records']:,} records)", "min s", "median s"], [
        ["on a lake already holding the month", f"{on_month['min']:.1f}", f"{on_month['median']:.1f}"],
        ["on an empty lake", f"{on_empty['min']:.1f}", f"{on_empty['median']:.1f}"],
    ]) + f"\nmonth / empty: {stats['month_over_empty']:.2f}x"
    return text, stats


def memory_report(mem: dict) -> str:
    rows = [[fmt, f"{r['bytes'] / 2**20:.0f}", f"{r['inflated_bytes'] / 2**20:.0f}", f"{r['records_routed']:,}",
             f"{r['seconds']:.1f}", f"{r['rss_after_imports_mb']:.0f}", f"{r['maxrss_mb']:.0f}",
             f"{r['peak_tree_rss_mb']:.0f}", "yes" if r["ok"] else "NO"] for fmt, r in mem["files"].items()]
    return _table(["format", "file MB", "inflated MB", "records", "seconds", "RSS after imports MB",
                   "peak RSS MB", "tree peak MB", f"< {mem['target_mb']:g} MB"], rows)


def machine_line(m: dict) -> str:
    """The machine and its load, in one line: figures from a busy machine are not measurements."""
    return (f"Machine: {m['nproc']} CPU(s) {m['cpu_model']}, {m['mem_total_mb']} MB RAM, Python {m['python']}, "
            f"{m['java']}, pyspark {m['pyspark']}, duckdb {m['duckdb']}, dagster {m['dagster']}; load average "
            f"{m['load_average_at_start'][0]:.1f} at start, {m['load_average_at_end'][0]:.1f} at end")


def write_results(results: dict, folder: str, stem: str, latest: str) -> str:
    """``<folder>/<stem>.json`` and ``<folder>/<latest>.json``, each replaced atomically, with the
    finish time and the load average at the end; the path of the first."""
    results["finished"] = dt.datetime.now(dt.timezone.utc).isoformat()
    results["machine"]["load_average_at_end"] = os.getloadavg()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{stem}.json")
    for target in (path, os.path.join(folder, f"{latest}.json")):
        with open(target + ".tmp", "w") as f:
            json.dump(results, f, indent=1, default=str)
        os.replace(target + ".tmp", target)
    return path


def clear_work(work: str) -> None:
    """Everything in a work folder but ``logs/``: the logs are small and say what each run did."""
    for name in os.listdir(work):
        if name != "logs":
            shutil.rmtree(os.path.join(work, name), ignore_errors=True)


# --------------------------------------------------------------------------- main


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=2_000_000, help="records in the end-to-end lake")
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--repeat", type=int, default=2, help="repetitions of every timed run")
    p.add_argument("--bad-share", type=float, default=0.01)
    p.add_argument("--bad-files", type=int, default=5, help="unreadable files (one of each kind at 5)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--start", type=dt.date.fromisoformat,
                   help="first event date (default: DAYS days ago, so events end yesterday as in production)")
    p.add_argument("--backfill-days", type=int, default=30)
    p.add_argument("--backfill-records-per-day", type=int, default=20_000)
    p.add_argument("--memory-file-mb", type=float, default=1024, help="uncompressed size of each large file")
    p.add_argument("--memory-target-mb", type=float, default=500)
    p.add_argument("--skip-e2e", action="store_true")
    p.add_argument("--skip-backfill", action="store_true")
    p.add_argument("--skip-incremental", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--quick", action="store_true",
                   help="smoke size: 20k records over 2 days, 3-day backfill of 2k/day, 16 MB files")
    p.add_argument("--master", default="local[2]", help="Spark master for ours and the Spark baselines")
    p.add_argument("--threads", type=int, default=2, help="DuckDB threads")
    p.add_argument("--workdir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "lake-bench"))
    p.add_argument("--results-dir", default=os.path.join(HERE, "results"))
    p.add_argument("--keep", action="store_true", help="keep the generated lakes and outputs")
    args = p.parse_args(argv)
    if args.quick:
        args.records, args.days = 20_000, 2
        args.backfill_days, args.backfill_records_per_day = 3, 2_000
        args.memory_file_mb = 16
    # Events end yesterday, and the month ends yesterday so its new day is today: ingestion
    # then dates undatable rejects (today) next to the data, as `lake generate` does.
    today = dt.datetime.now(dt.timezone.utc).date()
    args.start = args.start or today - dt.timedelta(days=args.days)
    args.month_start = today - dt.timedelta(days=args.backfill_days)
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_child"]:
        return child_main(argv[1:])
    args = parse_args(argv)
    started = dt.datetime.now(dt.timezone.utc)
    work = os.path.join(args.workdir, started.strftime("%Y%m%dT%H%M%SZ"))
    logs = os.path.join(work, "logs")
    os.makedirs(logs)
    say(f"work folder {work} (logs in {logs})")
    results: dict = {"started": started.isoformat(), "args": {k: str(v) for k, v in vars(args).items()},
                     "machine": machine_info()}
    texts: list[str] = []
    failed = False
    try:
        if not args.skip_e2e:
            e2e = bench_e2e(args, work, logs)
            results["e2e"] = e2e
            if e2e["gold_problems"]:
                failed = True
                say("GOLD MISMATCH: the engines disagree, so no speed is reported:")
                for line in e2e["gold_problems"]:
                    print("  " + line)
            else:
                text, stats = e2e_report(e2e)
                results["e2e"]["stats"] = stats
                rc = e2e["row_counts"]
                texts.append(f"End to end: {e2e['records']:,} records, {e2e['input_mb']:.1f} MB raw, {args.days} days, "
                             f"{args.repeat} repetition(s); gold identical across engines "
                             f"({rc['gold_rows']['ours']} (date, service) rows)\n" + text)
                if count_differences(rc):
                    texts.append(f"note: row counts differ between engines: {count_differences(rc)}")
        if not (args.skip_backfill and args.skip_incremental):
            month = prepare_month(args, work, logs)
            if not args.skip_backfill:
                bf = bench_backfill(args, month, work, logs)
                results["backfill"] = bf
                text, bf["stats"] = backfill_report(bf)
                texts.append(text + (f"\nGOLD MISMATCH range vs daily: {bf['gold_problems'][:5]}"
                                     if bf["gold_problems"] else ""))
                failed |= bool(bf["gold_problems"])
            if not args.skip_incremental:
                inc = bench_incremental(args, month, work, logs)
                results["incremental"] = inc
                text, inc["stats"] = incremental_report(inc)
                texts.append(text + (f"\nGOLD MISMATCH month vs empty: {inc['gold_problems'][:5]}"
                                     if inc["gold_problems"] else ""))
                failed |= bool(inc["gold_problems"])
        if not args.skip_memory:
            mem = bench_memory(args, work, logs)
            results["memory"] = mem
            texts.append("Bounded memory: ingest_file on one large file per format\n" + memory_report(mem))
    finally:
        path = write_results(results, args.results_dir, started.strftime("%Y%m%dT%H%M%SZ"), "latest")
        if not args.keep:
            clear_work(work)
    print("\n" + machine_line(results["machine"]))
    for text in texts:
        print("\n" + text)
    print(f"\nresults: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
