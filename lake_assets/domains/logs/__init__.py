"""The log analytics lake (contract: shared/contracts/logs.md)."""
from dagster import Definitions

from lake_assets.domain import Chart, Domain, Example, GenerateRequest
from lake_assets.settings import LakeSettings

NAME = "logs"


def definitions(settings: LakeSettings | None = None) -> Definitions:
    """Everything the logs domain adds to the code location, built with ``settings``."""
    from lake_assets.domains.logs import assets, checks

    settings = settings or LakeSettings.from_env()
    a, c = assets.build(settings), checks.build(settings)
    return Definitions(
        assets=[a["validated_logs"], a["processed_logs"], a["daily_activity"]],
        asset_checks=c["LOGS_CHECKS"],
        jobs=[a["ingest_logs_job"], a["logs_pipeline_job"]],
        sensors=[a["logs_landing_sensor"]],
    )


def _tables():
    from lake_assets.domains.logs.tables import TABLES

    return TABLES


def _generate(storage, req: GenerateRequest) -> str:
    from lake_assets.domains.logs.generator import generate_logs

    gen = generate_logs(storage.write_bytes, start=req.start, days=req.days, records_per_day=req.records_per_day,
                        bad_share=req.bad_share, bad_files=req.bad_files, seed=req.seed, now=req.now)
    return (f"wrote {gen.files} raw file(s), {gen.records} records ({gen.bad_records} bad, "
            f"{len(gen.bad_files)} unreadable file(s)) for {req.start}..{req.end} under {storage.uri('raw')}")


def _landing():
    from lake_assets.domains.logs.assets import LANDING

    return LANDING


def _run(defs, instance, storage, progress, settings: LakeSettings):
    from lake_assets.pipeline import run_landing_domain

    return run_landing_domain(defs, instance, storage, _landing(), progress=progress)


DOMAIN = Domain(
    name=NAME,
    description="Web server access logs and application errors -> processed -> daily activity per service",
    definitions=definitions, tables=_tables, generate=_generate, run=_run, landing=_landing,
    report=(
        Chart("Requests per service per day", "SELECT date, service, requests FROM logs.daily_activity ORDER BY date",
              "line", x="date", y=("requests",), color="service", requires=("logs.daily_activity",)),
        Chart("Server and client errors per service per day",
              "SELECT date, service, server_errors + client_errors AS errors FROM logs.daily_activity ORDER BY date",
              "line", x="date", y=("errors",), color="service", requires=("logs.daily_activity",)),
        Chart("p95 latency (ms) per service per day",
              "SELECT date, service, p95_latency_ms FROM logs.daily_activity ORDER BY date",
              "line", x="date", y=("p95_latency_ms",), color="service", requires=("logs.daily_activity",)),
    ),
    examples=(
        Example("Top services by server errors",
                "SELECT service, sum(server_errors) AS server_errors, sum(requests) AS requests "
                "FROM logs.daily_activity GROUP BY service ORDER BY server_errors DESC LIMIT 5"),
        Example("Rejected log records by reason",
                "SELECT reason, count(*) AS records FROM logs.rejected_records GROUP BY reason ORDER BY records DESC"),
        Example("Slowest paths (p95 latency)",
                "SELECT path, count(*) AS requests, quantile_cont(latency_ms, 0.95) AS p95_ms FROM logs.access "
                "GROUP BY path ORDER BY p95_ms DESC LIMIT 5"),
    ),
)
