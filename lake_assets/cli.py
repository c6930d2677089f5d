"""``lake``: generate sample data, run the lake end to end, open the UI.

A thin shell over the code location's definitions and jobs: every run it starts
is recorded in the Dagster instance at ``DAGSTER_HOME`` (by default the
project-local ``.dagster_home``, the same one ``lake ui`` opens).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from collections import Counter


def _setup_env(args) -> None:
    if getattr(args, "lake", None):
        os.environ["LAKE_ROOT"] = args.lake
    from lake_assets import settings

    os.environ["DAGSTER_HOME"] = settings.dagster_home()
    # Keep a project-local instance quiet about telemetry and let runs use the shared session.
    yaml = os.path.join(os.environ["DAGSTER_HOME"], "dagster.yaml")
    if not os.path.exists(yaml):
        with open(yaml, "w") as f:
            f.write("telemetry:\n  enabled: false\n")


def _storage():
    from lake_assets import settings
    from lake_assets.lake import LakeStorage

    return LakeStorage(settings.lake_root())


def _say(msg: str) -> None:
    print(f"[lake] {msg}", flush=True)


# -- generate --------------------------------------------------------------
def cmd_generate(args) -> int:
    _setup_env(args)
    storage = _storage()
    today = dt.datetime.now(dt.timezone.utc).date()
    start = dt.date.fromisoformat(args.start) if getattr(args, "start", None) else today - dt.timedelta(days=args.days)
    end = start + dt.timedelta(days=args.days - 1)
    now = dt.datetime.now(dt.timezone.utc)
    t0 = time.time()
    if args.domain == "logs":
        from lake_assets.domains.logs.generator import generate_logs

        gen = generate_logs(storage.write_bytes, start=start, days=args.days, records_per_day=args.records_per_day,
                            bad_share=args.bad_share, bad_files=args.bad_files, seed=args.seed, now=now)
        _say(f"logs: wrote {gen.files} raw file(s), {gen.records} records ({gen.bad_records} bad, "
             f"{len(gen.bad_files)} unreadable file(s)) for {start}..{end} "
             f"under {storage.uri('raw')} in {time.time() - t0:.1f}s")
    elif args.domain == "commerce":
        from lake_assets.domains.commerce.generator import generate_commerce

        gen = generate_commerce(storage.write_bytes, start=start, days=args.days, users=args.users,
                                events_per_day=args.records_per_day, transactions_per_day=max(1, args.records_per_day // 5),
                                bad_share=args.bad_share, bad_files=args.bad_files > 0, seed=args.seed, now=now)
        rows = ", ".join(f"{n} {d}" for d, n in gen.rows.items())
        _say(f"commerce: wrote {gen.files} raw file(s) ({rows}; {len(gen.bad_files)} unreadable) "
             f"for {start}..{end} under {storage.uri('raw')} in {time.time() - t0:.1f}s")
    elif args.domain == "orders":
        from lake_assets.domains.orders.generator import generate_order_days
        from lake_assets.domains.orders.source import OrdersSourceResource, masked

        url = OrdersSourceResource.from_env().url
        days = generate_order_days(url, days=args.days, new_orders=args.orders_per_day, seed=args.seed)
        _say(f"orders: simulated {len(days)} business day(s) in {masked(url)}: "
             f"{sum(d.rows for d in days)} row change(s), {sum(d.invalid_rows for d in days)} invalid, "
             f"{sum(d.same_ts_rows for d in days)} sharing an updated_at")
    else:
        print(f"unknown domain {args.domain!r}; known: {', '.join(DOMAINS)}", file=sys.stderr)
        return 2
    return 0


DOMAINS = ("logs", "commerce", "orders")


# -- run -------------------------------------------------------------------
def run_lake(progress=_say):
    """Ingest and build every domain; returns the DomainRun of each."""
    from dagster import DagsterInstance

    from lake_assets.definitions import build_defs
    from lake_assets.domains.commerce.assets import LANDING as COMMERCE_LANDING
    from lake_assets.domains.commerce.assets import dates_to_rebuild
    from lake_assets.domains.logs.assets import LANDING as LOGS_LANDING
    from lake_assets.pipeline import run_domain

    storage = _storage()
    defs = build_defs(storage.root_uri)
    runs = []
    # Entered, so Dagster's definitions-state storage is this live instance's.
    with DagsterInstance.get() as instance:
        widen = {"commerce": lambda touched: dates_to_rebuild(storage, touched)}
        for domain, landing in (("commerce", COMMERCE_LANDING), ("logs", LOGS_LANDING)):
            runs.append(run_domain(
                defs, instance, domain=domain, ingest_job=f"ingest_{domain}_job",
                build_job=f"{domain}_pipeline_job", validated_assets=landing.validated_assets,
                list_raw=lambda landing=landing: [f.path for f in landing.raw_files(storage)], progress=progress,
                widen=widen.get(domain)))
        from lake_assets.domains.orders.run import run_orders
        from lake_assets.domains.orders.source import OrdersSourceResource, sqlite_file

        url = OrdersSourceResource.from_env().url
        path = sqlite_file(url)
        if not os.environ.get("ORDERS_DB_URL") and path and not os.path.exists(path):
            # Nothing configured and no embedded database yet: there is no orders source to pull.
            progress("orders: no source database (ORDERS_DB_URL unset, no embedded database; "
                     "`lake generate orders` creates one): skipped")
        else:
            runs.append(run_orders(defs, instance, progress=progress))
    return runs


def _report(runs) -> int:
    failed = False
    for domain in runs:
        for r in domain.runs:
            for name in r.warned_checks:
                _say(f"WARN  {domain.domain}: check {name} failed with severity WARN (run {r.run_id[:8]})")
            if not r.success:
                failed = True
                where = f" for {r.partitions[0]}..{r.partitions[1]}" if r.partitions else ""
                _say(f"FAILED {domain.domain}: {r.job}{where} (run {r.run_id})")
                for f in r.failures[:5]:
                    _say(f"       {f.splitlines()[0][:300]}")
                for name in r.failed_checks:
                    _say(f"       blocking check failed: {name}")
    return 1 if failed else 0


def cmd_run(args) -> int:
    _setup_env(args)
    t0 = time.time()
    runs = run_lake()
    for d in runs:
        if d.domain == "orders":
            _say(f"orders: {d.landed_rows} changed row(s) landed, {len(d.landing_sets)} landing set(s) validated "
                 f"({d.valid_rows} valid, {d.discarded_rows} discarded) in {len(d.runs)} run(s)")
        else:
            _say(f"{d.domain}: {d.files} file(s) ingested, {len(d.touched)} partition(s) built "
                 f"in {len(d.runs)} run(s)")
    code = _report(runs)
    _say(("done" if code == 0 else "finished with failures") + f" in {time.time() - t0:.1f}s; "
         f"runs recorded in {os.environ['DAGSTER_HOME']}")
    return code


# -- summary and demo ------------------------------------------------------
def _zone_rows(storage, prefix: str) -> tuple[int, int]:
    import pyarrow.parquet as pq

    files = [f for f in storage.list_files(prefix) if f.path.endswith(".parquet")]
    rows = 0
    for f in files:
        with storage.open_random(f.path) as fh:
            rows += pq.ParquetFile(fh).metadata.num_rows
    return len(files), rows


def print_summary(storage) -> None:
    print()
    print(f"Lake: {storage.root_uri}")
    print(f"  {'zone':<44} {'files':>7} {'rows':>10}")
    for label, prefix in [("raw/ (waiting)", "raw"), ("validated/", "validated"), ("archive/", "archive"),
                          ("rejected/system/ (whole files)", "rejected/system")]:
        n = len([f for f in storage.list_files(prefix) if not f.path.endswith(".reason.json")])
        print(f"  {label:<44} {n:>7} {'':>10}")
    for label, prefix in [("processed/logs/log_type=access/", "processed/logs/log_type=access"),
                          ("processed/logs/log_type=error/", "processed/logs/log_type=error"),
                          ("rejected/data_quality/", "rejected/data_quality"),
                          ("analytics/daily_activity/", "analytics/daily_activity")]:
        files, rows = _zone_rows(storage, prefix)
        print(f"  {label:<44} {files:>7} {rows:>10}")

    for label, prefix in [("bronze/ (commerce, files as received)", "bronze"),
                          ("quarantine/<dataset>/_files/ (whole files)", None)]:
        if prefix:
            n = len(storage.list_files(prefix))
        else:
            n = sum(1 for d in ("events", "users", "transactions")
                    for f in storage.list_files(f"quarantine/{d}/_files", hidden=True)
                    if not f.path.endswith(".reason.json"))
        print(f"  {label:<44} {n:>7} {'':>10}")
    for table in ("silver/events", "silver/users", "silver/transactions", "quarantine/events",
                  "quarantine/users", "quarantine/transactions", "gold/dim/dim_users", "gold/fact/fact_events",
                  "gold/fact/fact_transactions", "gold/mart/daily_revenue", "gold/mart/daily_active_users",
                  "gold/mart/user_ltv", "silver/staging/orders", "discarded/orders"):
        files, rows = _zone_rows(storage, table)
        print(f"  {table + '/':<44} {files:>7} {rows:>10}")
    metrics_files = len([f for f in storage.list_files("metrics") if f.path.endswith(".csv")])
    print(f"  {'metrics/ (one CSV per materialization)':<44} {metrics_files:>7} {'':>10}")

    quarantined: Counter = Counter()
    for d in ("events", "users", "transactions"):
        for table in _read_tables(storage, f"quarantine/{d}", ["reason"]):
            quarantined.update(f"{d}: {r}" for r in table.column("reason").to_pylist())
    if quarantined:
        print("\nQuarantined commerce rows by reason (first rule broken):")
        for reason, n in quarantined.most_common():
            print(f"  {reason:<48} {n:>8}")

    counts: Counter = Counter()
    for table in _read_tables(storage, "rejected/data_quality", ["reason"]):
        counts.update(table.column("reason").to_pylist())
    if counts:
        print("\nRejected records by reason (first rule broken):")
        for reason, n in counts.most_common():
            print(f"  {reason:<40} {n:>8}")
    bad_files = [f for f in storage.list_files("rejected/system") if f.path.endswith(".reason.json")]
    if bad_files:
        import json

        print("\nFiles rejected whole:")
        for f in bad_files[:10]:
            info = json.loads(storage.read_text(f.path))
            print(f"  {info.get('source', '?'):<48} {info.get('reason')}")

    import pyarrow as pa

    revenue = [t for t in _read_tables(storage, "gold/mart/daily_revenue") if t.num_rows]
    if revenue:
        table = pa.concat_tables(revenue).sort_by([("date", "ascending"), ("revenue", "descending")])
        cols = ["date", "country", "currency", "revenue", "orders", "refunded_amount", "avg_order_value"]
        print(f"\nGold preview (gold/mart/daily_revenue, {table.num_rows} rows):")
        print("  " + " ".join(f"{c:>15}" for c in cols))
        for row in table.select(cols).slice(0, 8).to_pylist():
            print("  " + " ".join(f"{v!s:>15}" for v in row.values()))

    tables = [t for t in _read_tables(storage, "analytics/daily_activity") if t.num_rows]
    if tables:
        table = pa.concat_tables(tables).sort_by([("date", "ascending"), ("service", "ascending")])
        cols = ["date", "service", "requests", "client_errors", "server_errors", "unique_users",
                "p95_latency_ms", "error_events", "critical_events"]
        print(f"\nGold preview (analytics/daily_activity, {table.num_rows} rows):")
        print("  " + " ".join(f"{c:>14}" for c in cols))
        for row in table.select(cols).slice(0, 12).to_pylist():
            print("  " + " ".join(f"{(round(v, 1) if isinstance(v, float) else v)!s:>14}" for v in row.values()))


def _read_tables(storage, prefix: str, columns: list[str] | None = None):
    """Each Parquet file under a prefix as an Arrow table (the summary's small reads)."""
    import pyarrow.parquet as pq

    for f in storage.list_files(prefix):
        if f.path.endswith(".parquet"):
            with storage.open_random(f.path) as fh:
                yield pq.read_table(fh, columns=columns)


def cmd_demo(args) -> int:
    _setup_env(args)
    args.start = None
    for domain in DOMAINS:
        args.domain = domain
        code = cmd_generate(args)
        if code:
            return code
    code = cmd_run(args)
    storage = _storage()
    print_summary(storage)
    print(f"""
Next:
  open the UI on these runs:   .venv/bin/lake ui      (then http://127.0.0.1:3000)
  look at the files:           {storage.root_uri}
  quarantined rows (commerce): {storage.uri('quarantine')}
  rejected rows (logs):        {storage.uri('rejected/data_quality')}
  metrics CSVs:                {storage.uri('metrics')}
""")
    return code


def cmd_ui(args) -> int:
    _setup_env(args)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lake", description=__doc__.splitlines()[0])
    parser.add_argument("--lake", help="lake root (overrides LAKE_ROOT; default ./.lake)")
    sub = parser.add_subparsers(dest="command", required=True)

    def gen_args(p, days, rpd):
        p.add_argument("--days", type=int, default=days)
        p.add_argument("--records-per-day", type=int, default=rpd)
        p.add_argument("--bad-share", type=float, default=0.01, help="share of records breaking a rule")
        p.add_argument("--bad-files", type=int, default=3, help="unreadable files to add")
        p.add_argument("--seed", type=int, default=7)

    g = sub.add_parser("generate", help="write synthetic raw files into raw/")
    g.add_argument("domain", choices=list(DOMAINS))
    g.add_argument("--users", type=int, default=200, help="commerce: distinct users")
    g.add_argument("--orders-per-day", type=int, default=200, help="orders: new orders per simulated day")
    gen_args(g, 7, 2000)
    g.add_argument("--start", help="first event date (default: DAYS days ago)")
    g.set_defaults(func=cmd_generate)

    r = sub.add_parser("run", help="ingest raw/ and build every touched partition to gold")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="generate a week of sample data for every domain, run it, print a summary")
    gen_args(d, 7, 2000)
    d.add_argument("--users", type=int, default=200, help="commerce: distinct users")
    d.add_argument("--orders-per-day", type=int, default=200, help="orders: new orders per simulated day")
    d.set_defaults(func=cmd_demo)

    u = sub.add_parser("ui", help="open the Dagster UI on the lake's instance")
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--port", type=int, default=3000)
    u.set_defaults(func=cmd_ui)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
