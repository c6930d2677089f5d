"""``lake``: generate sample data, run the lake end to end, query it, open the UI.

A thin shell over the code location's definitions and jobs: every run it starts
is recorded in the Dagster instance at ``DAGSTER_HOME`` (by default the
project-local ``.dagster_home``, the same one ``lake ui`` opens).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time


def _setup_env(args) -> None:
    if getattr(args, "lake", None):
        os.environ["LAKE_ROOT"] = args.lake
    from lake_assets import settings

    lakes_own = not os.environ.get("DAGSTER_HOME")  # the project-local home lake makes
    os.environ["DAGSTER_HOME"] = settings.dagster_home()
    # Telemetry off, and the event log storage that keeps its connections (lake_assets.instance).
    from lake_assets.instance import ensure_instance_yaml

    ensure_instance_yaml(os.environ["DAGSTER_HOME"], lakes_own=lakes_own)


def _storage():
    from lake_assets import settings
    from lake_assets.lake import LakeStorage

    return LakeStorage(settings.lake_root())


def _say(msg: str) -> None:
    print(f"[lake] {msg}", flush=True)


def _domains() -> dict:
    from lake_assets.domains import DOMAINS

    return DOMAINS


def _generating() -> dict:
    """The domains ``lake generate`` and ``lake demo`` write sample data for."""
    return {name: d for name, d in _domains().items() if d.generate is not None}


# -- generate --------------------------------------------------------------
#: What ``lake demo`` generates per domain unless the domain's ``demo_span`` or the user says otherwise.
DEMO_DAYS, DEMO_RECORDS_PER_DAY = 7, 2000


def cmd_generate(args) -> int:
    from lake_assets.domain import GenerateRequest

    domain = _domains()[args.domain]
    storage = _storage()
    now = dt.datetime.now(dt.timezone.utc)
    start = dt.date.fromisoformat(args.start) if getattr(args, "start", None) else now.date() - dt.timedelta(days=args.days)
    request = GenerateRequest(start=start, days=args.days, records_per_day=args.records_per_day,
                              bad_share=args.bad_share, bad_files=args.bad_files, seed=args.seed, now=now,
                              options={o.dest: getattr(args, o.dest) for o in domain.generate_options})
    t0 = time.time()
    line = domain.generate(storage, request)
    _say(f"{domain.name}: {line} in {time.time() - t0:.1f}s")
    return 0


# -- run -------------------------------------------------------------------
def run_lake(progress=_say, only=()):
    """Ingest and build every domain (or those ``only`` names); returns each domain's run report."""
    from lake_assets.definitions import run_every_domain
    from lake_assets.settings import LakeSettings
    from lake_assets.spark import spark_config_from_env, start_session_early

    storage = _storage()
    settings = LakeSettings.from_env()
    # With the settings the definitions' `spark` resource is built with (spark_resource_from_env): the
    # JVM starts while the definitions are built and raw/ is ingested, not in the first Spark step.
    start_session_early(spark_config_from_env())
    # Entered, so Dagster's definitions-state storage is this live instance's.
    with _instance() as instance:
        return run_every_domain(instance, storage, settings, progress, only=only)


def _instance():
    """The instance at DAGSTER_HOME, its storage created or migrated by one process at a time.

    Dagster's SQLite storages create their schema on first open; several `lake` started
    together on a fresh home would race in that migration, so the first open is
    serialized by a lock file beside the instance.
    """
    import fcntl

    from dagster import DagsterInstance

    with open(os.path.join(os.environ["DAGSTER_HOME"], ".lake-instance.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            instance = DagsterInstance.get()
            instance.get_runs(limit=1)  # storage opened (and migrated) while the lock is held
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return instance


def _status_lines(domain) -> list[str]:
    """What a domain's run left stale, grouped per asset with its dates and the first reason."""
    by_asset: dict[str, list] = {}
    for s in domain.stale:
        by_asset.setdefault(s.asset, []).append(s)
    lines = []
    for asset, items in by_asset.items():
        dates = sorted(s.partition for s in items if s.partition)
        where = (f"{len(dates)} partition(s) {dates[0]}..{dates[-1]}" if dates else "whole table")
        lines.append(f"{asset}: {where}: {items[0].reason}")
    return lines


def _report(runs) -> int:
    failed = False
    for domain in runs:
        for path in getattr(domain, "skipped", [])[:5]:
            _say(f"skipped {domain.domain}: {path} (another run is ingesting it, or has)")
        if getattr(domain, "blocked_by", None):
            _say(f"{domain.domain}: not built here: {domain.blocked_by} is building it")
        elif domain.stale and all(r.success for r in domain.runs):
            failed = True
            _say(f"STALE {domain.domain}: the run left partitions stale (see `lake status`):")
            for line in _status_lines(domain)[:10]:
                _say(f"       {line}")
        for r in domain.runs:
            if r.retried and r.success:
                _say(f"RETRIED {domain.domain}: {r.job}: {', '.join(sorted(set(r.retried)))} recovered from "
                     f"{len(r.retried)} transient failure(s) (run {r.run_id[:8]})")
            for name in dict.fromkeys(r.warned_checks):
                _say(f"WARN  {domain.domain}: check {name} failed with severity WARN{_on(r, name)} "
                     f"(run {r.run_id[:8]})")
            if not r.success:
                failed = True
                where = f" for {r.partitions[0]}..{r.partitions[1]}" if r.partitions else ""
                _say(f"FAILED {domain.domain}: {r.job}{where} (run {r.run_id})")
                for f in r.failures[:5]:
                    _say(f"       {f.splitlines()[0][:300]}")
                for name in dict.fromkeys(r.failed_checks):
                    _say(f"       blocking check failed: {name}{_on(r, name)}")
    return 1 if failed else 0


def _on(outcome, check: str) -> str:
    """Where a check of a run failed: `` on 2024-05-01`` or `` on 3 partition(s) 2024-05-01..2024-05-03``
    (a range run evaluates it per partition: one line says them all)."""
    keys = sorted(set(outcome.check_partitions.get(check, ())))
    if not keys:
        return ""
    return f" on {keys[0]}" if len(keys) == 1 else f" on {len(keys)} partition(s) {keys[0]}..{keys[-1]}"


def _chosen_domains(names) -> list[str] | None:
    """The domains ``names`` selects (every one when none), or None once it has said which name is no
    domain: `lake run` and `lake demo` refuse it (exit 2) before anything is generated or run."""
    from lake_assets.definitions import domain_selection

    try:
        return domain_selection(names)
    except ValueError as e:
        _say(str(e))
        return None


def cmd_run(args) -> int:
    if _chosen_domains(args.domains) is None:
        return 2
    t0 = time.time()
    runs = run_lake(only=args.domains)
    for d in runs:
        _say(d.summary)
    code = _report(runs)
    _say(("done" if code == 0 else "finished with failures") + f" in {time.time() - t0:.1f}s; "
         f"runs recorded in {os.environ['DAGSTER_HOME']}")
    return code


def _run_job(job_name: str):
    """Run one job of the code location in process on the lake's instance (recorded, seen in the UI);
    a failure is said, with its first errors. Returns (result, outcome)."""
    from lake_assets.definitions import build_defs
    from lake_assets.pipeline import QUIET, run_outcome
    from lake_assets.settings import LakeSettings

    defs = build_defs(_storage().root_uri, LakeSettings.from_env())
    with _instance() as instance:
        result = defs.resolve_job_def(job_name).execute_in_process(
            run_config=QUIET, instance=instance, raise_on_error=False, tags={"lake/trigger": "cli"})
    outcome = run_outcome(job_name, result)
    if not outcome.success:
        _say(f"FAILED {job_name} (run {outcome.run_id})")
        for f in outcome.failures[:3]:
            _say(f"       {f.splitlines()[0][:300]}")
    return result, outcome


def cmd_report(args) -> int:
    """Rebuild the lake report and print where it is (``--open``: in the default browser)."""
    from lake_assets.analytics.tables import REPORT_FILE

    t0 = time.time()
    _, outcome = _run_job("lake_report_job")
    if not outcome.success:
        return 1
    uri = _storage().uri(REPORT_FILE)
    _say(f"lake report written in {time.time() - t0:.1f}s: {uri}")
    print(uri)
    if args.open:
        import webbrowser

        webbrowser.open(uri if "://" in uri else f"file://{uri}")
    return 0


def cmd_train(args) -> int:
    """Train a challenger purchase-propensity model now (the weekly schedule's job)."""
    result, outcome = _run_job("train_propensity_job")
    if not outcome.success:
        return 1
    for event in result.get_asset_materialization_events():
        md = event.materialization.metadata
        text = {k: getattr(v, "value", v) for k, v in md.items()}
        _say(f"purchase_propensity_model: {text.get('decision')}: {text.get('reason')}")
    _say("predictions are rescored by the next `lake run`")
    return 0


def cmd_status(args) -> int:
    """Per domain: what is stale and why (from the instance's records), without building."""
    from lake_assets.definitions import build_defs
    from lake_assets.settings import LakeSettings
    from lake_assets.staleness import domain_status

    storage = _storage()
    defs = build_defs(storage.root_uri, LakeSettings.from_env())
    stale_any = False
    report = []
    with _instance() as instance:
        for domain in _domains().values():
            status = domain_status(defs, instance, domain=domain.name, sources=domain.source_keys(),
                                   build_job=domain.build_job_name)
            stale_any = stale_any or bool(status.stale)
            report.append({"domain": domain.name, "stale": [
                {"asset": s.asset, "partition": s.partition, "reason": s.reason} for s in status.stale]})
            if args.format == "table":
                _say(f"{domain.name}: " + (f"{len(status.stale)} stale asset partition(s)" if status.stale
                                           else "up to date"))
                for line in _status_lines(status):
                    _say(f"  {line}")
    if args.format == "json":
        print(json.dumps(report, indent=1))
    return 1 if stale_any else 0


# -- summary and demo ------------------------------------------------------
def _registered(registered: dict, storage, table):
    """(partitions, rows) of a table: from the catalog, or from the lake's footers without one."""
    from lake_assets.catalog.base import scan_partitions

    found = registered.get(table.qualified_name)
    if found is not None:
        return len(found.partitions), found.rows
    entries = scan_partitions(storage, table)
    return len(entries), sum(e.rows for e in entries)


def _print_table(result, limit: int = 12, indent: str = "  ") -> None:
    cols = result.column_names
    rows = result.slice(0, limit).to_pylist()
    cell = lambda v: str(round(v, 2) if isinstance(v, float) else v)  # noqa: E731
    widths = [max([len(c)] + [len(cell(r[c])) for r in rows]) for c in cols]
    print(indent + "  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print(indent + "  ".join(cell(r[c]).rjust(w) for c, w in zip(cols, widths)))


def print_summary(storage) -> None:
    """What the lake holds, read back through the registry, the catalog and ``lake sql``'s engine."""
    from lake_assets.catalog.resource import CatalogResource
    from lake_assets.catalog.sql import LakeSQLResource
    from lake_assets.catalog.tables import ZONES
    from lake_assets.definitions import registry

    from lake_assets.definitions import claimed_raw_folders

    domains = _domains()
    claimed = claimed_raw_folders()
    print()
    print(f"Lake: {storage.root_uri}")
    print(f"\n  {'landing zone':<12} {'files waiting in raw/':>22} {'files rejected whole':>22}")
    for d in domains.values():
        if not d.landing:
            continue
        landing = d.landing()
        waiting = len(landing.raw_files(storage, claimed))
        folders = {landing.zones.rejected_dir(f) for f in [*landing.formats, "unknown"]}
        rejected = sum(1 for folder in folders for f in storage.list_files(folder, hidden=True)
                       if f.path.endswith(".reason.json"))
        print(f"  {d.name:<12} {waiting:>22} {rejected:>22}")

    catalog = CatalogResource.from_env()
    tables = sorted(registry(), key=lambda t: (list(domains).index(t.domain), ZONES.index(t.zone), t.name))
    print(f"\n  {'table':<34} {'zone':<11} {'partitions':>10} {'rows':>10}   location")
    queryable = []
    registered = catalog.registered()
    for t in tables:
        parts, rows = _registered(registered, storage, t)
        print(f"  {t.qualified_name:<34} {t.zone:<11} {parts:>10} {rows:>10}   {t.location}/")
        if rows:
            queryable.append(t.qualified_name)
    metrics_files = len([f for f in storage.list_files("metrics") if f.path.endswith(".csv")])
    print(f"  {'metrics/ (one CSV per materialization)':<57} {metrics_files:>10} files")

    if catalog.kind == "none":
        return
    sql = LakeSQLResource.from_env()
    print("\nRejected and quarantined rows by reason (the first rule broken):")
    for t in tables:
        if t.qualified_name in queryable and t.zone in ("rejected", "quarantine", "discarded") \
                and "reason" in t.schema.names:
            result = sql.query(f"SELECT reason, count(*) AS n FROM {t.qualified_name} "
                               f"GROUP BY reason ORDER BY n DESC, reason").to_pylist()
            for r in result[:5]:
                print(f"  {t.qualified_name:<34} {r['reason'] or '(none)':<40} {r['n']:>8}")
            if len(result) > 5:
                rest = result[5:]
                print(f"  {'':<34} {f'... {len(rest)} more reason(s)':<40} {sum(r['n'] for r in rest):>8}")
    for d in domains.values():
        # A domain's first example, once every table it names holds rows.
        example = d.examples[0] if d.examples else None
        if example is None or not any(n in example.sql for n in queryable) or any(
                t.qualified_name in example.sql and t.qualified_name not in queryable for t in tables):
            continue
        result = sql.query(example.sql)
        if result.num_rows:
            print(f"\n{d.name}: {example.question.lower()}  (lake sql)")
            _print_table(result)


def cmd_demo(args) -> int:
    """Generate sample data for the domains named (every one when none is), then `lake run` them."""
    chosen = _chosen_domains(args.domains)
    if chosen is None:
        return 2
    args.start = None
    days, per_day = args.days, args.records_per_day
    for name, domain in _generating().items():
        if name not in chosen:
            continue
        args.domain = name
        span = domain.demo_span or (DEMO_DAYS, DEMO_RECORDS_PER_DAY)
        args.days = days if days is not None else span[0]
        args.records_per_day = per_day if per_day is not None else span[1]
        code = cmd_generate(args)
        if code:
            return code
    from lake_assets.analytics.tables import REPORT_FILE

    code = cmd_run(args)
    storage = _storage()
    print_summary(storage)
    report = (f"{storage.uri(REPORT_FILE)}   (`.venv/bin/lake report --open` rebuilds and opens it)"
              if storage.exists(REPORT_FILE) else "`.venv/bin/lake report --open` builds and opens it")
    print(f"""
Next:
  ask the lake a question:     .venv/bin/lake sql "select * from logs.daily_activity order by date, service limit 5"
                               .venv/bin/lake sql --schema commerce "select reason, count(*) from quarantine_events group by all"
                               .venv/bin/lake sql          (an interactive prompt; `.venv/bin/lake catalog list` lists tables)
  open the UI on these runs:   .venv/bin/lake ui      (then http://127.0.0.1:3000)
  look at the files:           {storage.root_uri}
  metrics CSVs:                {storage.uri('metrics')}
  the lake report:             {report}
""")
    return code


# -- catalog ---------------------------------------------------------------
def cmd_catalog(args) -> int:
    from lake_assets.catalog.resource import CatalogResource
    from lake_assets.definitions import registry

    storage = _storage()
    catalog = CatalogResource.from_env()
    tables = list(registry())
    if args.action == "sync":
        if catalog.kind == "none":
            print("LAKE_CATALOG=none: no catalog to sync", file=sys.stderr)
            return 2
        t0 = time.time()
        found = catalog.sync(storage, tables)
        for name, n in found.items():
            _say(f"{name}: {n} partition(s) registered")
        _say(f"catalog synced from {storage.root_uri} in {time.time() - t0:.1f}s "
             f"({', '.join(b.name for b in catalog.backends())})")
        return 0
    if args.action == "list":
        entries = []
        registered = catalog.registered()
        for t in tables:
            reg = registered.get(t.qualified_name)
            entries.append({
                "table": t.qualified_name, "zone": t.zone, "description": t.description, "asset": t.asset,
                "location": reg.location if reg else storage.uri(t.location),
                "partition_keys": [f"{k.name} {k.type}" for k in t.partition_keys],
                "columns": [f"{f.name} {f.dataType.simpleString()}" for f in t.columns],
                "registered": reg is not None,
                "partitions": len(reg.partitions) if reg else 0, "rows": reg.rows if reg else 0})
        if args.format == "json":
            print(json.dumps(entries, indent=2))
        else:
            for e in entries:
                state = f"{e['partitions']} partition(s), {e['rows']} row(s)" if e["registered"] else "not registered"
                print(f"{e['table']:<34} {state:<34} {e['location']}")
                print(f"    partitioned by: {', '.join(e['partition_keys']) or '-'}")
                print(f"    columns: {', '.join(e['columns'])}")
        return 0
    # ddl
    from lake_assets.catalog.base import scan_partitions
    from lake_assets.catalog.ddl import athena_database_ddl, athena_ddl

    print(f"-- Athena DDL for the lake at {storage.root_uri}")
    prefix = catalog.glue_database_prefix
    for domain in sorted({t.domain for t in tables}):
        print(athena_database_ddl(domain, prefix).rstrip(";") + ";")
    for t in tables:
        for statement in athena_ddl(storage, t, scan_partitions(storage, t), prefix):
            print(statement.rstrip(";") + ";")
    return 0


def cmd_ui(args) -> int:
    import shutil

    from lake_assets import settings

    # The UI's code server must see the same lake as this shell, wherever it starts.
    os.environ["LAKE_ROOT"] = settings.lake_root()
    dagster = shutil.which("dagster") or os.path.join(os.path.dirname(sys.executable), "dagster")
    workspace = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "workspace.yaml")
    target = ["-w", workspace] if os.path.exists(workspace) else ["-m", "lake_assets.definitions"]
    argv = [dagster, "dev", *target, "-h", args.host, "-p", str(args.port)]
    _say(f"LAKE_ROOT={os.environ['LAKE_ROOT']} DAGSTER_HOME={os.environ['DAGSTER_HOME']}; "
         f"UI on http://{args.host}:{args.port}")
    os.execv(dagster, argv)
    return 0


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{value} is not a share: give a number from 0 to 1")
    return value


def _iso_date(text: str) -> str:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: give YYYY-MM-DD") from None
    return text


def main(argv: list[str] | None = None) -> int:
    from lake_assets.domain import at_least

    parser = argparse.ArgumentParser(prog="lake", description=__doc__.splitlines()[0])
    parser.add_argument("--lake", help="lake root (overrides LAKE_ROOT; default ./.lake)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of any failure")
    sub = parser.add_subparsers(dest="command", required=True)

    def gen_args(p, days, rpd):
        p.add_argument("--days", type=at_least(1), default=days, help="how many days (1 or more)")
        p.add_argument("--records-per-day", type=at_least(1), default=rpd)
        p.add_argument("--bad-share", type=_share, default=0.01, help="share of records breaking a rule (0 to 1)")
        p.add_argument("--bad-files", type=at_least(0), default=3, help="unreadable files to add")
        p.add_argument("--seed", type=int, default=7)

    def domain_args(p):
        seen = set()
        for domain in _domains().values():
            for o in domain.generate_options:
                if o.flag not in seen:
                    seen.add(o.flag)
                    o.add_to(p)

    g = sub.add_parser("generate", help="write synthetic raw files into raw/ (or a domain's source)")
    g.add_argument("domain", choices=list(_generating()))
    domain_args(g)
    gen_args(g, 7, 2000)
    g.add_argument("--start", type=_iso_date, help="first event date, YYYY-MM-DD (default: DAYS days ago)")
    g.set_defaults(func=cmd_generate)

    r = sub.add_parser("run", help="ingest raw/ and build everything stale to gold")
    r.add_argument("domains", nargs="*", metavar="DOMAIN",
                   help="only these domains (default: every one; analytics, which reads commerce gold, "
                        "is built only when named or when no domain is)")
    r.set_defaults(func=cmd_run)

    st = sub.add_parser("status", help="per domain, what is stale and why (exit 1 when anything is)")
    st.add_argument("--format", choices=["table", "json"], default="table")
    st.set_defaults(func=cmd_status)

    d = sub.add_parser("demo", help="generate a week of sample data for every domain (five for commerce), "
                                    "run it, print a summary, write the lake report")
    d.add_argument("domains", nargs="*", metavar="DOMAIN",
                   help="only these domains (default: every one), generated and run as `lake run DOMAIN...` does")
    gen_args(d, None, None)
    domain_args(d)
    d.set_defaults(func=cmd_demo)

    rp = sub.add_parser("report", help="rebuild the lake report (reports/lake_report.html) and print its path")
    rp.add_argument("--open", action="store_true", help="open it in the default browser")
    rp.set_defaults(func=cmd_report)

    tr = sub.add_parser("train", help="train a challenger purchase-propensity model now (champion only if better)")
    tr.set_defaults(func=cmd_train)

    c = sub.add_parser("catalog", help="the table catalog: sync it from the lake, list it, print Athena DDL")
    c.add_argument("action", choices=["sync", "list", "ddl"])
    c.add_argument("--format", choices=["table", "json"], default="table", help="list: output format")
    c.set_defaults(func=cmd_catalog)

    from lake_assets.catalog.sql import add_sql_command
    from lake_assets.provision import add_provision_command

    add_sql_command(sub)
    add_provision_command(sub)

    u = sub.add_parser("ui", help="open the Dagster UI on the lake's instance")
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--port", type=int, default=3000)
    u.set_defaults(func=cmd_ui)

    args = parser.parse_args(argv)
    try:
        _setup_env(args)
        return args.func(args)
    except Exception as exc:  # noqa: BLE001 - the user's mistakes get one line; ours keep their traceback
        message = user_error(exc)
        if message is None or args.debug:
            raise
        print(f"lake: {message}", file=sys.stderr)
        return 2


def user_error(exc: BaseException) -> str | None:
    """One line for a failure a person can act on (a setting, credentials, an endpoint), or None.

    Bad arguments are argparse's (usage and exit 2); this covers what only shows when the
    command runs: settings read from the environment, an S3 endpoint that does not answer,
    credentials missing or refused, a bucket that does not exist.
    """
    from lake_assets.settings import SettingError

    if isinstance(exc, SettingError):
        return str(exc)
    from lake_assets.lake import errors

    text = str(exc)
    where = f"the lake at {os.environ.get('LAKE_ROOT', '')}"
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"
    found = errors.kind(exc)
    if found == errors.UNREACHABLE:
        return (f"cannot reach {endpoint} for {where}: check AWS_ENDPOINT_URL and AWS_REGION, "
                "and that the endpoint is up")
    if found == errors.CREDENTIALS:
        return (f"{endpoint} refused the credentials for {where}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) to a key allowed on the bucket")
    if found == errors.NO_BUCKET:
        return f"the bucket of {where} does not exist: create it (`lake provision --apply`) or fix LAKE_ROOT"
    if found in (errors.DB_UNREACHABLE, errors.DB_CREDENTIALS, errors.NO_DATABASE):
        return f"a database could not be used ({errors.reason(exc)}): check ORDERS_DB_URL and ORDERS_STATE_DB_URL"
    if isinstance(exc, ValueError) and "LAKE_ROOT" in text:
        return text
    return None


if __name__ == "__main__":
    sys.exit(main())
