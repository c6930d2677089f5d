"""Daily batch: what ``lake run`` costs on a day's increment, per domain and for the whole demo.

A team's daily increment is small (issue 14: ``lake demo``'s week is 35 k records), so
what a data engineer sees there is fixed overhead (interpreter, definitions, Dagster's
bookkeeping, a Spark session, one Spark job per check), not work. This benchmark
measures it as they would meet it:

* per domain (logs, commerce, orders): a fresh lake holding only that domain's week at
  demo size, written by ``lake generate <domain>`` with ``lake demo``'s arguments, then
  ``lake run`` timed as a subprocess (``logs_e2e.run_ours``, the end-to-end benchmark's
  own measurement), with the Spark jobs it started (its event log) and its steps' times
  (from the Dagster instance the run recorded into);
* the whole demo: the three weeks in one lake, one ``lake run``;
* for logs, the same increment through the end-to-end benchmark's three baselines
  (strict Spark, Glue-style Spark, DuckDB), whose gold must agree with ours before a
  ratio is printed. Commerce and orders have no baseline jobs yet: ours only.

Everything runs ``--repeat`` times, interleaved (a repetition runs every lake once), and
medians are reported against the issue's targets (demo's ``lake run`` at most 40 s,
commerce's week at most 20 s). Results go to ``benchmarks/results/daily-<UTC>.json``.

    .venv/bin/python benchmarks/daily_batch.py [--repeat 3] [--domains logs commerce orders] [--skip-demo]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from logs_e2e import (  # noqa: E402  (the end-to-end benchmark's measuring, baselines and gold, not a second set)
    BASELINE_JOBS,
    ENGINE_LABELS,
    _table,
    clear_work,
    compare_gold,
    count_differences,
    jobs_text,
    lake_env,
    link_tree,
    machine_info,
    machine_line,
    read_gold,
    row_counts,
    run_baseline,
    run_measured,
    run_ours,
    say,
    summary,
    write_results,
)

DOMAINS = ("logs", "commerce", "orders")
DEMO = "demo"  # the lake holding every domain's week, as `lake demo` leaves it
#: Issue 14's daily-batch targets: median seconds of `lake run` on these lakes.
TARGETS = {DEMO: 40.0, "commerce": 20.0}
NO_BASELINE = "no baseline jobs yet for {domains}: ours only"
#: Fewer repetitions than this make a smoke run, whose medians are not a measurement.
MEASURED_REPEAT = 3


# --------------------------------------------------------------------------- lakes


def lake_command(*argv: str) -> list[str]:
    """The ``lake`` CLI as a subprocess, with this interpreter (the venv's)."""
    return [sys.executable, "-m", "lake_assets.cli", *argv]


def generator_flags(args) -> list[str]:
    """``lake demo``'s generator arguments (its defaults unless overridden): the same week for every domain."""
    return ["--days", str(args.days), "--records-per-day", str(args.records_per_day), "--bad-share",
            str(args.bad_share), "--bad-files", str(args.bad_files), "--seed", str(args.seed),
            "--users", str(args.users), "--orders-per-day", str(args.orders_per_day)]


def generate_template(name: str, domains: tuple[str, ...], args, work: str, logs: str) -> dict:
    """A lake and Dagster home holding ``domains``' week, written by ``lake generate`` as a user would.

    Generated once and copied per run (``fresh_copy``): the week is the same in every
    repetition, and generating is not what is measured.
    """
    lake, home = os.path.join(work, f"template-{name}", "lake"), os.path.join(work, f"template-{name}", "home")
    lines = {}
    for domain in domains:
        m = run_measured(f"generate-{name}-{domain}", lake_command("generate", domain, *generator_flags(args)),
                         env=lake_env(lake, home, args), logs=logs)
        with open(os.path.join(logs, f"generate-{name}-{domain}.out"), encoding="utf-8") as f:
            lines[domain] = next((line.strip() for line in f if line.startswith("[lake]")), "")
        say(f"{name}: {lines[domain]} ({m.seconds:.1f}s)")
    orders_db = os.path.join(home, "orders_source.db")  # `lake generate orders`' embedded source
    return {"lake": lake, "generated": lines, "orders_db": orders_db if os.path.exists(orders_db) else None}


def fresh_copy(template: dict, folder: str) -> tuple[str, dict[str, str]]:
    """A fresh lake for one run (hard links: the lake never rewrites a file in place), and the
    environment that gives the run its own copy of the orders source.

    ``run_ours`` starts from an empty Dagster home, where ``lake generate orders`` put the
    source, so the copy is named by ``ORDERS_DB_URL``; a copy, not a link: SQLite may write
    to a database it opens.
    """
    shutil.rmtree(folder, ignore_errors=True)
    lake = os.path.join(folder, "lake")
    os.makedirs(lake)  # orders' template lake is empty: its week is in the source database
    link_tree(template["lake"], lake)
    if not template["orders_db"]:
        return lake, {}
    db = os.path.join(folder, "orders_source.db")
    shutil.copyfile(template["orders_db"], db)
    return lake, {"ORDERS_DB_URL": f"sqlite:///{db}"}


# --------------------------------------------------------------------------- measuring


def run_steps(name: str, home: str, logs: str) -> list[dict]:
    """Every run a ``lake run`` recorded in the instance at ``home``: its job, seconds and its steps'
    seconds (``STEP_SUCCESS`` durations), read in a subprocess so the instance is the run's own."""
    m = run_measured(f"{name}-steps", [sys.executable, os.path.abspath(__file__), "_child", "steps"],
                     env={"DAGSTER_HOME": home}, logs=logs)
    return m.report["runs"]


def measure_lake(name: str, template: dict, rep: int, args, work: str, logs: str) -> tuple[dict, str]:
    """One ``lake run`` on a fresh copy of a template: seconds, peak RSS, Spark jobs, runs and steps.
    Returns the sample and the lake (the logs baselines compare gold with it)."""
    label = f"{name}-{rep}"
    lake, env = fresh_copy(template, os.path.join(work, f"lake-{label}"))
    home = os.path.join(work, f"home-{label}")
    ours = run_ours(f"run-{label}", lake, home, args, logs, event_log=os.path.join(work, "spark-events", label),
                    env=env)
    runs = run_steps(f"run-{label}", home, logs)
    return {"seconds": ours["seconds"], "peak_rss_mb": ours["peak_rss_mb"], "spark_jobs": ours["spark_jobs"],
            "runs": runs, "steps": step_seconds(runs), "jobs": job_seconds(runs)}, lake


def step_seconds(runs: list[dict]) -> dict[str, float]:
    """Seconds per ``job / step`` over a lake run's runs (a job run several times, such as one ingest
    run per batch of files, summed)."""
    out: dict[str, float] = {}
    for run in runs:
        for step, seconds in run["steps"].items():
            key = f"{run['job']} / {step}"
            out[key] = out.get(key, 0.0) + seconds
    return out


def job_seconds(runs: list[dict]) -> dict[str, float]:
    """Wall seconds per job (start to end of its runs, summed): where a lake run's time went, by job."""
    out: dict[str, float] = {}
    for run in runs:
        out[run["job"]] = out.get(run["job"], 0.0) + (run["seconds"] or 0.0)
    return out


def rejected_whole(lake: str) -> set[str]:
    """Raw files our ingestion rejected whole (each has a ``.reason.json`` naming its source), relative
    to ``raw/``: the logs baselines are given every other file, so all engines count the same records."""
    out = set()
    for d, _, files in os.walk(lake):
        for f in files:
            if f.endswith(".reason.json"):
                with open(os.path.join(d, f), encoding="utf-8") as fh:
                    source = json.load(fh).get("source", "")
                if source.startswith("raw/"):
                    out.add(os.path.relpath(source, "raw"))
    return out


def logs_baselines(rep: int, lake: str, template: dict, args, work: str, logs: str) -> tuple[dict, list[str], dict]:
    """The logs week through the three baselines, after ours: their samples, gold differences with ours,
    and row counts. Their input is the template's ``raw/`` less what ours rejected whole."""
    baseline_input = os.path.join(work, "logs-baseline-input")
    if rep == 0:
        link_tree(os.path.join(template["lake"], "raw"), baseline_input, exclude=rejected_whole(lake))
    samples, outputs = {}, {"ours": lake}
    for engine, script, spark in BASELINE_JOBS:
        name, out = f"logs-{engine}-{rep}", os.path.join(work, f"logs-{engine}-{rep}")
        say(f"repetition {rep + 1}/{args.repeat}: logs, {ENGINE_LABELS[engine]} ...")
        samples[engine] = run_baseline(name, script, spark, baseline_input, out, args, logs,
                                       event_log=os.path.join(work, "spark-events", name))
        outputs[engine] = out
    gold = {k: read_gold(v) for k, v in outputs.items()}
    problems = [p for engine, _, _ in BASELINE_JOBS for p in compare_gold(gold["ours"], gold[engine], engine)]
    counts = {k: row_counts(v) for k, v in outputs.items()}
    counts["gold_rows"] = {k: len(v) for k, v in gold.items()}
    if not args.keep:
        for engine, _, _ in BASELINE_JOBS:
            shutil.rmtree(outputs[engine], ignore_errors=True)
    return samples, problems, counts


def bench(args, work: str, logs: str) -> dict:
    """Every lake ``--repeat`` times, interleaved: in each repetition the domains in order (logs followed
    by its baselines), then the demo lake."""
    lakes = {d: (d,) for d in args.domains}
    if not args.skip_demo:
        lakes[DEMO] = DOMAINS
    say(f"generating a week per lake with `lake generate` ({' '.join(generator_flags(args))}) ...")
    templates = {name: generate_template(name, domains, args, work, logs) for name, domains in lakes.items()}
    samples: dict[str, list[dict]] = {name: [] for name in lakes}
    baselines: dict[str, list[dict]] = {engine: [] for engine, _, _ in BASELINE_JOBS}
    problems: list[str] = []
    counts: dict = {}
    for rep in range(args.repeat):
        for name, template in templates.items():
            say(f"repetition {rep + 1}/{args.repeat}: {name}, lake run ...")
            sample, lake = measure_lake(name, template, rep, args, work, logs)
            samples[name].append(sample)
            if name == "logs" and not args.skip_baselines:
                got, found, counts = logs_baselines(rep, lake, template, args, work, logs)
                for engine, s in got.items():
                    baselines[engine].append(s)
                problems += found
            if not args.keep:
                shutil.rmtree(os.path.dirname(lake), ignore_errors=True)
    return {"lakes": {name: list(d) for name, d in lakes.items()},
            "generated": {name: t["generated"] for name, t in templates.items()},
            "samples": samples, "baselines": {k: v for k, v in baselines.items() if v},
            "gold_problems": problems, "row_counts": counts}


# --------------------------------------------------------------------------- report


def generated_text(generated: dict[str, dict[str, str]]) -> str:
    """What ``lake generate`` wrote, one line per domain (the demo lake's weeks are the same weeks)."""
    lines = []
    for by_domain in generated.values():
        for line in by_domain.values():
            for where in (r" under \S+", r" in sqlite:\S+(?=:)", r" in [\d.]+s$"):  # temporary paths, timing
                line = re.sub(where, "", line)
            if line not in lines:
                lines.append(line)
    return "\n".join("  " + line for line in lines)


def lake_stats(samples: list[dict]) -> dict:
    """Medians of one lake's runs: seconds, Spark jobs, and seconds per job and per step."""
    def median_of(key: str) -> dict[str, float]:
        names = {k for s in samples for k in s[key]}
        return {k: statistics.median(s[key].get(k, 0.0) for s in samples) for k in names}

    return {"seconds": summary([s["seconds"] for s in samples]),
            "peak_rss_mb": max(s["peak_rss_mb"] for s in samples),
            "spark_jobs": [s["spark_jobs"] for s in samples],
            "jobs_median": median_of("jobs"), "steps_median": median_of("steps")}


def target_text(name: str, median: float) -> str:
    if name not in TARGETS:
        return "-"
    target = TARGETS[name]
    return f"<= {target:g} s: " + ("met" if median <= target else f"NOT met ({median / target:.2f}x)")


def lakes_report(stats: dict[str, dict]) -> str:
    """One row per lake: ``lake run``'s seconds, memory, Spark jobs, and the issue's target."""
    label = {DEMO: "all three (lake demo)"}
    rows = [[label.get(name, name), f"{s['seconds']['min']:.1f}", f"{s['seconds']['median']:.1f}",
             f"{s['peak_rss_mb']:.0f}", jobs_text(s["spark_jobs"]), target_text(name, s["seconds"]["median"])]
            for name, s in stats.items()]
    return _table(["lake run on a week of", "min s", "median s", "peak RSS MB", "Spark jobs", "target"], rows)


def steps_report(name: str, s: dict, top: int) -> str:
    """Where one lake run's time went: seconds per job, then the ``top`` steps (medians)."""
    wall = s["seconds"]["median"]
    jobs = sorted(s["jobs_median"].items(), key=lambda kv: -kv[1])
    in_runs = sum(v for _, v in jobs)
    rows = [[job, f"{v:.1f}", f"{100 * v / wall:.0f}%"] for job, v in jobs]
    rows.append(["outside runs (start-up, definitions, work between runs)", f"{wall - in_runs:.1f}",
                 f"{100 * (wall - in_runs) / wall:.0f}%"])
    text = f"{name}: lake run {wall:.1f} s (median), by job\n" + _table(["job", "seconds", "share"], rows)
    steps = sorted(s["steps_median"].items(), key=lambda kv: -kv[1])
    rows = [[step, f"{v:.1f}", f"{100 * v / wall:.0f}%"] for step, v in steps[:top]]
    text += f"\n{name}: top {min(top, len(steps))} of {len(steps)} steps\n" + _table(["job / step", "seconds", "share"],
                                                                                     rows)
    return text


def baselines_report(ours: dict, baselines: dict[str, list[dict]]) -> tuple[str, dict]:
    """The logs week through ours and the three baselines; ratios are ours' median over each one's."""
    stats = {"ours": ours}
    for engine, samples in baselines.items():
        stats[engine] = {"seconds": summary([s["seconds"] for s in samples]),
                         "peak_rss_mb": max(s["peak_rss_mb"] for s in samples),
                         "spark_jobs": [s["spark_jobs"] for s in samples if "spark_jobs" in s] or None}
    median = ours["seconds"]["median"]
    ratios = {f"ours/{e}": median / stats[e]["seconds"]["median"] for e in baselines}
    rows = [[ENGINE_LABELS[e], f"{s['seconds']['min']:.1f}", f"{s['seconds']['median']:.1f}",
             f"{s['peak_rss_mb']:.0f}", jobs_text(s["spark_jobs"]), f"{median / s['seconds']['median']:.2f}"]
            for e, s in stats.items()]
    text = _table(["logs week, engine", "min s", "median s", "peak RSS MB", "Spark jobs", "ours/this"], rows)
    text += "\n" + ", ".join(f"ours/{ENGINE_LABELS[e]}: {ratios[f'ours/{e}']:.2f}x" for e in baselines)
    return text, ratios


def report(res: dict, args) -> tuple[list[str], dict]:
    """The printed sections, and the stats stored in the results."""
    stats = {name: lake_stats(samples) for name, samples in res["samples"].items()}
    texts = ["Daily batch: a week at `lake demo` size per lake (`lake generate " + " ".join(generator_flags(args))
             + f"`), {args.repeat} repetition(s), medians\n" + generated_text(res["generated"]),
             lakes_report(stats)]
    out = {"lakes": stats}
    if "logs" in stats and res["baselines"]:
        if res["gold_problems"]:
            texts.append("GOLD MISMATCH on the logs week: the engines disagree, so no ratio is reported:\n"
                         + "\n".join("  " + p for p in res["gold_problems"]))
        else:
            text, out["logs_ratios"] = baselines_report(stats["logs"], res["baselines"])
            rows = res["row_counts"]["gold_rows"]
            texts.append(text + f"\ngold identical across engines ({rows['ours']} (date, service) rows)")
            if count_differences(res["row_counts"]):
                texts.append(f"note: row counts differ between engines: {count_differences(res['row_counts'])}")
    others = [d for d in ("commerce", "orders") if d in stats]
    if others:
        texts.append(NO_BASELINE.format(domains=" and ".join(others)))
    texts += [steps_report(name, s, args.top) for name, s in stats.items()]
    return texts, out


# --------------------------------------------------------------------------- children and main


def child_main(argv: list[str]) -> int:
    """``steps``: the runs of the instance at DAGSTER_HOME with their steps' seconds, as one JSON line."""
    if argv != ["steps"]:
        raise SystemExit(f"unknown child command {argv}")
    from dagster import DagsterEventType, DagsterInstance

    instance = DagsterInstance.get()
    runs = []
    for record in instance.get_run_records():
        run = record.dagster_run
        steps = {}
        for entry in instance.all_logs(run.run_id, of_type={DagsterEventType.STEP_SUCCESS}):
            event = entry.dagster_event
            steps[event.step_key] = event.event_specific_data.duration_ms / 1000
        seconds = (record.end_time - record.start_time) if record.start_time and record.end_time else None
        runs.append({"job": run.job_name, "run_id": run.run_id, "status": run.status.value, "seconds": seconds,
                     "steps": steps})
    print(json.dumps({"runs": runs}), flush=True)
    return 0


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=MEASURED_REPEAT, help="repetitions of every lake run")
    p.add_argument("--domains", nargs="+", choices=DOMAINS, default=list(DOMAINS),
                   help="domains measured alone (the demo lake always holds all three)")
    p.add_argument("--skip-demo", action="store_true", help="leave out the lake holding all three domains")
    p.add_argument("--skip-baselines", action="store_true", help="leave out the logs baselines")
    p.add_argument("--top", type=int, default=8, help="steps listed per lake")
    g = p.add_argument_group("the week (lake demo's defaults)")
    g.add_argument("--days", type=int, default=7)
    g.add_argument("--records-per-day", type=int, default=2000)
    g.add_argument("--bad-share", type=float, default=0.01)
    g.add_argument("--bad-files", type=int, default=3)
    g.add_argument("--seed", type=int, default=7)
    g.add_argument("--users", type=int, default=200)
    g.add_argument("--orders-per-day", type=int, default=200)
    p.add_argument("--master", default="local[2]", help="Spark master for ours and the Spark baselines")
    p.add_argument("--threads", type=int, default=2, help="DuckDB threads")
    p.add_argument("--workdir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "lake-bench-daily"))
    p.add_argument("--results-dir", default=os.path.join(HERE, "results"))
    p.add_argument("--keep", action="store_true", help="keep the lakes, outputs and Spark event logs")
    args = p.parse_args(argv)
    args.domains = [d for d in DOMAINS if d in args.domains]
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_child"]:
        return child_main(argv[1:])
    args = parse_args(argv)
    started = dt.datetime.now(dt.timezone.utc)
    stem = started.strftime("%Y%m%dT%H%M%SZ")
    work = os.path.join(args.workdir, stem)
    logs = os.path.join(work, "logs")
    os.makedirs(logs)
    say(f"work folder {work} (logs in {logs})")
    smoke = args.repeat < MEASURED_REPEAT
    results: dict = {"started": started.isoformat(), "args": {k: str(v) for k, v in vars(args).items()},
                     "machine": machine_info(), "smoke": smoke, "targets_seconds": TARGETS}
    try:
        results["daily"] = bench(args, work, logs)
        texts, results["daily"]["stats"] = report(results["daily"], args)
    finally:
        path = write_results(results, args.results_dir, f"daily-{stem}", "daily-latest")
        if not args.keep:
            clear_work(work)
    print("\n" + machine_line(results["machine"]))
    if smoke:
        print(f"SMOKE RUN ({args.repeat} repetition(s), fewer than {MEASURED_REPEAT}): not a measurement")
    for text in texts:
        print("\n" + text)
    print(f"\nresults: {path}")
    return 1 if results["daily"]["gold_problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
