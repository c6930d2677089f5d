"""End-to-end benchmark of the tpcds lake against a plain PySpark job and the same job in DuckDB.

One invocation generates the TPC-DS raw files once (``lake generate tpcds``'s
generator, DuckDB's dsdgen, at ``--scale``), then times, each ``--repeat`` times
and interleaved so that machine noise spreads evenly:

* ours: ``lake run`` (ingest, then bronze, silver, gold and their checks through
  Dagster) in a fresh ``DAGSTER_HOME`` on a fresh (hard-linked) copy of the raw
  files, with per-stage times from the runs' step events;
* ``baselines/tpcds_plain_spark_job.py``: one plain PySpark script doing the same
  conversions, rules, deduplication, partitioned writes and gold, no Dagster;
* ``baselines/tpcds_duckdb_job.py``: the same job in DuckDB SQL.

It refuses to print a speed until the three agree: silver row counts per table,
and the four gold tables row by row (every column; money exact, ratios within
1e-9 relative), with per-table row counts and money sums kept in the results.
The Spark runs write Spark's event log, from which the Spark jobs they used are
counted. Results go to ``benchmarks/results/tpcds_e2e-<UTC timestamp>.json``.

    .venv/bin/python benchmarks/tpcds_e2e.py [--scale 1] [--repeat 2] [--quick]

Every measured command runs as a subprocess; its peak memory is the largest sum
of RSS over its process tree (the JVM included), sampled from /proc (the
measuring helpers are ``logs_e2e.py``'s, imported).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(HERE)
BASELINES = os.path.join(HERE, "baselines")
sys.path.insert(0, HERE)
sys.path.insert(0, PROJECT)

from logs_e2e import (  # noqa: E402  (the logs benchmark's helpers, not a second copy)
    _table,
    child,
    clear_work,
    event_log_env,
    folder_bytes,
    fresh_home,
    jobs_text,
    lake_env,
    link_tree,
    machine_info,
    machine_line,
    parquet_rows,
    run_measured,
    say,
    spark_jobs,
    summary,
    write_results,
)

ENGINES = ("ours", "plain_spark", "duckdb")
LABELS = {"ours": "ours (lake run)", "plain_spark": "plain Spark job", "duckdb": "DuckDB job"}
#: Stages reported for every engine (a baseline has no ingestion, checks or other steps; ``other``: ours'
#: steps of no tpcds asset, e.g. the lake-wide ``lake_freshness`` check).
STAGES = ("ingestion", "bronze", "silver", "gold", "checks", "other", "outside")
#: Each gold table's key (contract §4): the grain rows are matched on.
GOLD_KEYS = {
    "daily_sales_summary": ("sold_date", "channel"),
    "customer_lifetime_value": ("customer_sk",),
    "product_performance": ("month", "item_sk"),
    "monthly_trends": ("month", "channel"),
}
RATIO_TOLERANCE = 1e-9
TARGET_OVER_PLAIN = 1.2


# --------------------------------------------------------------------------- measuring


# --------------------------------------------------------------------------- generation


def generate(root: str, args, logs: str) -> dict:
    """The raw files under ``root/raw/tpcds/``, written in a subprocess (DuckDB's dsdgen holds the
    whole scale factor in memory: 2.2 GB at SF 1); what was written, as a dict."""
    m = run_measured("generate", [sys.executable, os.path.abspath(__file__), "_child", "generate", "--root", root,
                                  "--scale", str(args.scale), "--chunks", str(args.chunks),
                                  *(["--gzip"] if args.gzip else []), "--bad-share", str(args.bad_share),
                                  "--bad-files", str(args.bad_files), "--seed", str(args.seed)], logs=logs)
    return {**m.report, "seconds": m.seconds, "peak_rss_mb": m.peak_rss_mb,
            "bytes": folder_bytes(os.path.join(root, "raw", "tpcds"))}


# --------------------------------------------------------------------------- our pipeline


def asset_stages() -> dict[str, str]:
    """Every tpcds asset's step name -> its stage (the asset names of lake_assets/domains/tpcds/assets.py)."""
    from lake_assets.domains.tpcds.schemas import GOLD
    from lake_assets.domains.tpcds.spec import TABLES

    out = {f"tpcds_bronze_{t}": "bronze" for t in TABLES}
    out |= {f"tpcds_silver_{t}": "silver" for t in TABLES}
    out["tpcds_silver_plan"] = "silver"  # the months each delivery touches
    out |= {f"tpcds_{g}": "gold" for g in GOLD}
    return out


def stage_of(step: str, assets: dict[str, str]) -> tuple[str, str]:
    """(stage, zone) of a Dagster step: an asset's own step is its zone's stage; an asset check's step
    (``<asset>_<asset>_<check>``) is ``checks``, of the zone of its asset."""
    if step.startswith("ingest_"):
        return "ingestion", "ingestion"
    if step in assets:
        return assets[step], assets[step]
    owners = [a for a in assets if step.startswith(a + "_")]
    if owners:
        return "checks", assets[max(owners, key=len)]
    return "other", "other"


def ours_stages(runs: list[dict], wall: float) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per stage and per check zone, summed over the runs' steps; ``outside`` = wall minus the steps."""
    assets = asset_stages()
    stages = dict.fromkeys(STAGES, 0.0)
    checks: dict[str, float] = {}
    for run in runs:
        for step, seconds in run["steps"].items():
            stage, zone = stage_of(step, assets)
            stages[stage] = stages.get(stage, 0.0) + seconds
            if stage == "checks":
                checks[zone] = checks.get(zone, 0.0) + seconds
    stages["outside"] = wall - sum(v for k, v in stages.items() if k != "outside")
    return stages, checks


def run_ours(name: str, raw: str, work: str, args, logs: str, event_log: str) -> tuple[dict, str]:
    """``lake run`` on a fresh lake holding a hard-linked copy of ``raw``: seconds, peak RSS, stages, steps."""
    lake = os.path.join(work, name)
    link_tree(raw, os.path.join(lake, "raw"))
    env = {**lake_env(lake, fresh_home(os.path.join(work, name + "-home")), args), **event_log_env(event_log)}
    m = run_measured(name, child("lake-run"), env=env, logs=logs)
    runs = m.report["runs"]
    failed = [r for r in runs if not r["success"]]
    if failed:
        raise RuntimeError(f"{name}: run(s) failed: {failed[:2]} (log {m.log})")
    stages, checks = ours_stages(runs, m.seconds)
    steps: dict[str, float] = {}
    for run in runs:
        for step, seconds in run["steps"].items():
            steps[step] = steps.get(step, 0.0) + seconds
    return ({"seconds": m.seconds, "peak_rss_mb": m.peak_rss_mb, "stages": stages, "checks_by_zone": checks,
             "steps": steps, "runs": [{k: v for k, v in r.items() if k != "steps"} for r in runs],
             "in_process_seconds": m.report["seconds"], "spark_jobs": spark_jobs(event_log)}, lake)


def run_baseline(engine: str, name: str, raw: str, out: str, args, logs: str, event_log: str) -> dict:
    """One baseline job in its own process: seconds, peak RSS, its stages and row counts."""
    if engine == "plain_spark":
        cmd = [os.path.join(BASELINES, "tpcds_plain_spark_job.py"), "--master", args.master]
        env = event_log_env(event_log)
    else:
        cmd = [os.path.join(BASELINES, "tpcds_duckdb_job.py"), "--threads", str(args.threads),
               *(["--memory-limit", args.duckdb_memory_limit] if args.duckdb_memory_limit else [])]
        env = None
    m = run_measured(name, [sys.executable, cmd[0], "--raw", raw, "--out", out, *cmd[1:]], env=env, logs=logs)
    phases = m.report.get("phases", {})
    stages = dict.fromkeys(STAGES, 0.0)
    for k in ("bronze", "silver", "gold"):
        stages[k] = phases.get(k, 0.0)
    stages["outside"] = m.seconds - sum(stages.values())  # interpreter, imports, the Spark session, counting
    return {"seconds": m.seconds, "peak_rss_mb": m.peak_rss_mb, "stages": stages, "phases": phases,
            "rows": m.report.get("rows", {}), **({"spark_jobs": spark_jobs(event_log)} if engine != "duckdb" else {})}


# --------------------------------------------------------------------------- agreement


def zone_rows(root: str) -> dict[str, dict[str, int]]:
    """Rows per table in bronze, silver and each stage's quarantine, from the Parquet footers."""
    from lake_assets.domains.tpcds.spec import TABLES

    out = {}
    for t in TABLES:
        q = os.path.join(root, "quarantine", "tpcds", t)
        out[t] = {"bronze": parquet_rows(os.path.join(root, "bronze", "tpcds", t)),
                  "silver": parquet_rows(os.path.join(root, "silver", "tpcds", t)),
                  "quarantine_bronze": parquet_rows(os.path.join(q, "stage=bronze")),
                  "quarantine_silver": parquet_rows(os.path.join(q, "stage=silver"))}
    return out


def count_problems(counts: dict[str, dict]) -> tuple[list[str], list[str]]:
    """(silver counts that differ: blocking; bronze and quarantine counts that differ: notes)."""
    blocking, notes = [], []
    tables = counts["ours"].keys()
    for t in tables:
        for zone in ("silver", "bronze", "quarantine_bronze", "quarantine_silver"):
            values = {e: c[t][zone] for e, c in counts.items()}
            if len(set(values.values())) > 1:
                (blocking if zone == "silver" else notes).append(f"{t} {zone} rows: {values}")
    return blocking, notes


def _gold_view(con, root: str, table: str) -> str:
    """A gold table's rows with the contract's columns (partition folders ignored: every column is in the files)."""
    from lake_assets.domains.tpcds.schemas import GOLD

    cols = ", ".join(f.name for f in GOLD[table].fields)
    pattern = os.path.join(root, "gold", "tpcds", table, "**", "*.parquet").replace("'", "''")
    return f"(SELECT {cols} FROM read_parquet('{pattern}', hive_partitioning = false, union_by_name = true))"


def gold_summary(con, root: str) -> dict[str, dict]:
    """Per gold table: rows, distinct keys, and the exact sum of every money and count column (as text)."""
    from pyspark.sql import types as T

    from lake_assets.domains.tpcds.schemas import GOLD

    out = {}
    for table, schema in GOLD.items():
        view = _gold_view(con, root, table)
        keys = ", ".join(GOLD_KEYS[table])
        numeric = (T.DecimalType, T.LongType, T.IntegerType)
        sums = [f.name for f in schema.fields if isinstance(f.dataType, numeric) and f.name not in GOLD_KEYS[table]]
        row = con.execute(f"SELECT count(*), count(DISTINCT ({keys})), "
                          + ", ".join(f"CAST(sum({c}) AS VARCHAR)" for c in sums) + f" FROM {view}").fetchone()
        out[table] = {"rows": row[0], "distinct_keys": row[1], "sums": dict(zip(sums, row[2:]))}
    return out


def compare_gold(con, ours: str, other: str, name: str, limit: int = 10) -> list[str]:
    """Every gold row that differs between ours and ``other``, table by table (matched on the table's key):
    missing on either side, or any column different (ratios, doubles, within 1e-9 relative)."""
    from pyspark.sql import types as T

    from lake_assets.domains.tpcds.schemas import GOLD

    problems = []
    for table, schema in GOLD.items():
        keys = GOLD_KEYS[table]
        on = " AND ".join(f"a.{k} IS NOT DISTINCT FROM b.{k}" for k in keys)
        diffs = []
        for f in schema.fields:
            if f.name in keys:
                continue
            if isinstance(f.dataType, T.DoubleType):
                diffs.append(f"NOT ((a.{f.name} IS NULL AND b.{f.name} IS NULL) OR abs(a.{f.name} - b.{f.name}) "
                             f"<= {RATIO_TOLERANCE} * greatest(abs(a.{f.name}), abs(b.{f.name})))")
            else:
                diffs.append(f"a.{f.name} IS DISTINCT FROM b.{f.name}")
        which = " || ".join(f"CASE WHEN coalesce({d}, true) THEN '{f} ' ELSE '' END"
                            for d, f in zip(diffs, [f.name for f in schema.fields if f.name not in keys]))
        key_text = " || '/' || ".join(f"coalesce(CAST(coalesce(a.{k}, b.{k}) AS VARCHAR), 'NULL')" for k in keys)
        sql = f"""
            WITH a AS {_gold_view(con, ours, table)}, b AS {_gold_view(con, other, table)},
            j AS (
                SELECT {key_text} AS k, a._in IS NULL AS only_b, b._in IS NULL AS only_a, {which} AS cols,
                       CAST(a AS VARCHAR) AS ra, CAST(b AS VARCHAR) AS rb
                FROM (SELECT *, true AS _in FROM a) a FULL JOIN (SELECT *, true AS _in FROM b) b ON {on}
            )
            SELECT k, only_a, only_b, cols, ra, rb, count(*) OVER ()
            FROM j WHERE only_a OR only_b OR cols <> '' ORDER BY k LIMIT {limit}
        """
        rows = con.execute(sql).fetchall()
        if rows:
            problems.append(f"{name}: {table}: {rows[0][6]} row(s) differ; first ones:")
            for k, only_a, only_b, cols, ra, rb, _ in rows:
                if only_a:
                    problems.append(f"  {table} {k}: only in ours: {ra}")
                elif only_b:
                    problems.append(f"  {table} {k}: only in {name}: {rb}")
                else:
                    problems.append(f"  {table} {k}: columns {cols.strip()} differ:\n    ours  {ra}\n    {name} {rb}")
    return problems


# --------------------------------------------------------------------------- the benchmark


def bench(args, work: str, logs: str) -> dict:
    gen_dir = os.path.join(work, "generated")
    say(f"generating TPC-DS at scale {args.scale:g} ...")
    gen = generate(gen_dir, args, logs)
    say(f"generated {len(gen['files'])} files, {sum(gen['rows'].values()):,} rows, {gen['bytes'] / 2**20:.1f} MB "
        f"in {gen['seconds']:.1f}s (peak {gen['peak_rss_mb']:.0f} MB)")
    raw = os.path.join(gen_dir, "raw")
    # The baselines read raw/tpcds/ in place: every file ours ingests, none it quarantines whole.
    baseline_raw = os.path.join(work, "baseline-raw")
    link_tree(raw, baseline_raw, exclude={os.path.relpath(p, "raw") for p in gen["bad_files"]})
    baseline_raw = os.path.join(baseline_raw, "tpcds")

    samples: dict[str, list[dict]] = {e: [] for e in ENGINES}
    problems: list[str] = []
    notes: list[str] = []
    counts: dict[str, dict] = {}
    gold: dict[str, dict] = {}
    event_logs = os.path.join(work, "spark-events")
    import duckdb

    for rep in range(args.repeat):
        say(f"repetition {rep + 1}/{args.repeat}: ours (lake run) ...")
        sample, lake = run_ours(f"ours-{rep}", raw, work, args, logs, os.path.join(event_logs, f"ours-{rep}"))
        samples["ours"].append(sample)
        outputs = {"ours": lake}
        for engine in ENGINES[1:]:
            name, out = f"{engine}-{rep}", os.path.join(work, f"{engine}-{rep}")
            say(f"repetition {rep + 1}/{args.repeat}: {engine} ...")
            samples[engine].append(run_baseline(engine, name, baseline_raw, out, args, logs,
                                                os.path.join(event_logs, name)))
            outputs[engine] = out
        say(f"repetition {rep + 1}/{args.repeat}: comparing silver counts and gold ...")
        counts = {e: zone_rows(p) for e, p in outputs.items()}
        blocking, notes = count_problems(counts)
        problems += blocking
        con = duckdb.connect(config={"threads": args.threads})
        gold = {e: gold_summary(con, p) for e, p in outputs.items()}
        for engine in ENGINES[1:]:
            problems += compare_gold(con, outputs["ours"], outputs[engine], engine)
        con.close()
        if not args.keep:
            for path in outputs.values():
                shutil.rmtree(path, ignore_errors=True)
                shutil.rmtree(path + "-home", ignore_errors=True)
        if problems:
            break
    silver_rows = sum(c["silver"] for c in counts["ours"].values())
    return {"generated": gen, "samples": samples, "problems": problems, "notes": notes, "zone_rows": counts,
            "gold": gold, "silver_rows": silver_rows, "raw_lines": sum(gen["rows"].values()) + sum(
                gen["bad_lines"].values()), "input_mb": gen["bytes"] / 2**20}


def report(res: dict, args) -> tuple[str, dict]:
    stats: dict = {}
    for engine, samples in res["samples"].items():
        secs = summary([s["seconds"] for s in samples])
        stats[engine] = {"seconds": secs, "peak_rss_mb": max(s["peak_rss_mb"] for s in samples),
                         "silver_rows_per_s": res["silver_rows"] / secs["median"],
                         "input_mb_per_s": res["input_mb"] / secs["median"],
                         "spark_jobs": [s["spark_jobs"] for s in samples if "spark_jobs" in s] or None,
                         "stages_median": {k: statistics.median(s["stages"][k] for s in samples) for k in STAGES}}
    ours = stats["ours"]["seconds"]["median"]
    for engine in stats:
        stats[engine]["ours_over_this"] = ours / stats[engine]["seconds"]["median"]
    rows = [[LABELS[e], f"{s['seconds']['min']:.1f}", f"{s['seconds']['median']:.1f}",
             f"{s['silver_rows_per_s']:,.0f}", f"{s['input_mb_per_s']:.2f}", f"{s['peak_rss_mb']:.0f}",
             jobs_text(s["spark_jobs"]), f"{s['ours_over_this']:.2f}"] for e, s in stats.items()]
    text = _table(["engine", "min s", "median s", "silver rows/s", "raw MB/s", "peak RSS MB", "Spark jobs",
                   "ours/this"], rows)
    stats["ratios"] = {f"ours/{e}": stats[e]["ours_over_this"] for e in ENGINES[1:]}
    over_plain, over_duckdb = stats["ratios"]["ours/plain_spark"], stats["ratios"]["ours/duckdb"]
    met = over_plain <= TARGET_OVER_PLAIN
    text += (f"\nours/plain Spark: {over_plain:.2f}x (target <= {TARGET_OVER_PLAIN}x: {'met' if met else 'NOT met'}); "
             f"ours/DuckDB: {over_duckdb:.2f}x")
    stats["target_met"] = met
    text += "\n\nBy stage (median seconds; ours from the runs' step events, the baselines from their own timers; " \
            "outside = wall minus the stages):\n"
    text += _table(["engine", *STAGES], [[LABELS[e], *[f"{stats[e]['stages_median'][k]:.1f}" for k in STAGES]]
                                          for e in ENGINES])
    checks = {}
    for s in res["samples"]["ours"]:
        for zone, v in s["checks_by_zone"].items():
            checks.setdefault(zone, []).append(v)
    stats["ours"]["checks_by_zone_median"] = {z: statistics.median(v) for z, v in checks.items()}
    text += "\nours' checks by zone: " + ", ".join(f"{z} {v:.1f}s" for z, v in stats["ours"]["checks_by_zone_median"]
                                                   .items())
    steps: dict[str, list[float]] = {}
    for s in res["samples"]["ours"]:
        for step, v in s["steps"].items():
            steps.setdefault(step, []).append(v)
    top = sorted(((statistics.median(v), k) for k, v in steps.items()), reverse=True)[:args.top]
    stats["ours"]["top_steps"] = {k: v for v, k in top}
    stats["ours"]["steps"] = len(steps)
    text += f"\nours' slowest steps (of {len(steps)}; median seconds): " + ", ".join(f"{k} {v:.1f}" for v, k in top)
    return text, stats


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0, help="TPC-DS scale factor (1: about 1 GB of raw files)")
    p.add_argument("--repeat", type=int, default=2, help="repetitions of every timed run (min and median reported)")
    p.add_argument("--quick", action="store_true", help="smoke size: scale 0.01, one repetition")
    p.add_argument("--chunks", type=int, default=1, help="files per table (dsdgen's -PARALLEL names)")
    p.add_argument("--gzip", action="store_true", help="gzip the raw files")
    p.add_argument("--bad-share", type=float, default=0.0,
                   help="share of broken lines appended per table (see the README: the baselines' readers are "
                        "more lenient than the contract on over-scale decimals)")
    p.add_argument("--bad-files", type=int, default=0, help="unreadable raw files (ours quarantines them whole; "
                                                             "the baselines are not given them)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--master", default="local[2]", help="Spark master for ours and the Spark baseline")
    p.add_argument("--threads", type=int, default=2, help="DuckDB threads")
    p.add_argument("--duckdb-memory-limit", help="DuckDB memory_limit (default: DuckDB's, 80%% of RAM)")
    p.add_argument("--top", type=int, default=8, help="our slowest steps listed")
    p.add_argument("--workdir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "lake-bench-tpcds"))
    p.add_argument("--results-dir", default=os.path.join(HERE, "results"))
    p.add_argument("--keep", action="store_true", help="keep the generated files, lakes, outputs and Spark event logs")
    args = p.parse_args(argv)
    if args.quick:
        args.scale, args.repeat = 0.01, 1
    return args


def child_main(argv: list[str]) -> int:
    """``_child generate``: the raw files, in a process of their own; one JSON line."""
    p = argparse.ArgumentParser(prog="tpcds_e2e.py _child generate")
    p.add_argument("what", choices=["generate"])
    p.add_argument("--root", required=True)
    p.add_argument("--scale", type=float, required=True)
    p.add_argument("--chunks", type=int, default=1)
    p.add_argument("--gzip", action="store_true")
    p.add_argument("--bad-share", type=float, default=0.0)
    p.add_argument("--bad-files", type=int, default=0)
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args(argv)
    from lake_assets.domains.tpcds.generator import generate_tpcds
    from lake_assets.lake import LakeStorage

    os.makedirs(a.root, exist_ok=True)
    gen = generate_tpcds(LakeStorage(a.root), scale=a.scale, chunks=a.chunks, gzip=a.gzip, bad_share=a.bad_share,
                         bad_files=a.bad_files, seed=a.seed, work_dir=a.root)
    print(json.dumps({"files": gen.files, "rows": gen.rows, "bad_lines": gen.bad_lines,
                      "bad_files": gen.bad_files}), flush=True)
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_child"]:
        return child_main(argv[1:])
    args = parse_args(argv)
    started = dt.datetime.now(dt.timezone.utc)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    work = os.path.join(args.workdir, stamp)
    logs = os.path.join(work, "logs")
    os.makedirs(logs)
    say(f"work folder {work} (logs in {logs})")
    results: dict = {"started": started.isoformat(), "args": {k: str(v) for k, v in vars(args).items()},
                     "machine": machine_info(), "smoke": args.repeat < 2 or args.scale < 1}
    text, failed = None, False
    try:
        res = bench(args, work, logs)
        results["e2e"] = res
        if res["problems"]:
            failed = True
        else:
            text, results["e2e"]["stats"] = report(res, args)
    finally:
        path = write_results(results, args.results_dir, f"tpcds_e2e-{stamp}", "tpcds_e2e-latest")
        if not args.keep:
            clear_work(work)
    print("\n" + machine_line(results["machine"]))
    res = results.get("e2e")
    if res:
        gen = res["generated"]
        print(f"\nTPC-DS scale {args.scale:g}: {res['raw_lines']:,} raw lines in {len(gen['files'])} files, "
              f"{res['input_mb']:.1f} MB; {res['silver_rows']:,} silver rows; {args.repeat} repetition(s)"
              + ("  [SMOKE RUN: not a measurement]" if results["smoke"] else ""))
        if failed:
            print("\nMISMATCH: the engines disagree, so no speed is reported:")
            for line in res["problems"]:
                print("  " + line)
        else:
            g = res["gold"]["ours"]
            print("gold identical across engines: " + ", ".join(f"{t} {v['rows']:,} rows" for t, v in g.items()))
            print("\n" + text)
        for line in res["notes"]:
            print("note: " + line)
    print(f"\nresults: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
