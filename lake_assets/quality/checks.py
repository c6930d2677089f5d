"""Helpers for asset checks shared by every domain: pandera results and reject-rate thresholds."""
from __future__ import annotations

import json
from dataclasses import dataclass

from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue

from lake_assets import settings


def _violation(check, col):
    """A Spark condition true where a row breaks a pandera built-in check (nulls break none)."""
    stats, name = check.statistics, check.name
    if name == "in_range":
        low = col >= stats["min_value"] if stats.get("include_min", True) else col > stats["min_value"]
        high = col <= stats["max_value"] if stats.get("include_max", True) else col < stats["max_value"]
        return ~(low & high)
    if name == "isin":
        return ~col.isin(*stats["allowed_values"])
    if name == "notin":
        return col.isin(*stats["forbidden_values"])
    bounds = {"greater_than_or_equal_to": lambda v: col < v, "greater_than": lambda v: col <= v,
              "less_than_or_equal_to": lambda v: col > v, "less_than": lambda v: col >= v}
    if name in bounds:
        return bounds[name](stats.get("min_value", stats.get("max_value")))
    raise ValueError(f"pandera check {name!r} has no Spark translation here; add one")


def validate_with_pandera(schema, df) -> dict[str, object]:
    """Errors of a ``pandera.pyspark`` schema on a DataFrame, computed in one Spark job.

    pandera checks the schema itself (columns, types, strictness: no Spark job);
    the data-level part of the same schema (nullability and each column check)
    is compiled into a single aggregation, instead of pandera's one job per
    column and check, which costs seconds per table even on a few rows.
    """
    from pandera.config import ValidationDepth, config_context
    from pyspark.sql import functions as F

    # Names, types and strictness only (nullability would cost pandera one job per column).
    shape = schema.update_columns({name: {"nullable": True, "checks": []} for name in schema.columns})
    with config_context(validation_depth=ValidationDepth.SCHEMA_ONLY):
        errors: dict[str, object] = json.loads(json.dumps(shape.validate(df).pandera.errors, default=str))
    if errors:
        return errors  # wrong columns or types: data checks would not mean much
    exprs, labels = [], []
    for name, column in schema.columns.items():
        col = F.col(name)
        if not column.nullable:
            labels.append((name, "not_nullable"))
            exprs.append(F.count(F.when(col.isNull(), 1)))
        for check in column.checks:
            labels.append((name, check.name))
            exprs.append(F.count(F.when(_violation(check, col), 1)))
    if not exprs:
        return {}
    counts = df.agg(*[e.alias(f"c{i}") for i, e in enumerate(exprs)]).first()
    failures = [{"column": col, "check": check, "failure_cases": int(n)}
                for (col, check), n in zip(labels, counts) if n]
    return {"DATA": failures} if failures else {}


def pandera_schema(struct, checks: dict[str, list] | None = None):
    """A strict ``pandera.pyspark`` schema from a StructType (types and nullability) plus column checks."""
    import pandera.pyspark as pa

    checks = checks or {}
    return pa.DataFrameSchema(
        {f.name: pa.Column(f.dataType, nullable=f.nullable, checks=checks.get(f.name, []))
         for f in struct.fields},
        strict=True,
    )


def pandera_result(schemas: dict[str, object], frames: dict[str, object]) -> AssetCheckResult:
    """Validate each DataFrame with its ``pandera.pyspark`` schema; fail listing every error."""
    errors = {name: found for name, schema in schemas.items()
              if (found := validate_with_pandera(schema, frames[name]))}
    return AssetCheckResult(
        passed=not errors,
        metadata={"tables": MetadataValue.json(sorted(schemas)), "errors": MetadataValue.json(errors)},
    )


@dataclass(frozen=True)
class RateThresholds:
    """Share of rejected records above which a check warns, and above which it fails."""

    warn: float
    error: float

    @classmethod
    def from_env(cls, prefix: str = "LAKE_REJECT_RATE", warn: float = 0.05, error: float = 0.25) -> "RateThresholds":
        return cls(settings.env_float(f"{prefix}_WARN", warn), settings.env_float(f"{prefix}_ERROR", error))


def rate_result(rejected: int, total: int, thresholds: RateThresholds, **metadata) -> AssetCheckResult:
    """Passes at or under ``warn``; above it fails with WARN, above ``error`` with ERROR (blocking)."""
    rate = rejected / total if total else 0.0
    return AssetCheckResult(
        passed=rate <= thresholds.warn,
        severity=AssetCheckSeverity.ERROR if rate > thresholds.error else AssetCheckSeverity.WARN,
        metadata={"rejected": rejected, "total": total, "reject_rate": round(rate, 6),
                  "warn_threshold": thresholds.warn, "error_threshold": thresholds.error, **metadata},
    )


def unique_key_result(df, keys: list[str], sample: int = 10) -> AssetCheckResult:
    """Passes when no two rows share ``keys``; fails with a few offending keys (one Spark job)."""
    from pyspark.sql import functions as F

    dupes = df.groupBy(*keys).count().where(F.col("count") > 1)
    found = ["/".join(str(r[k]) for k in keys) for r in dupes.limit(sample).collect()]
    return AssetCheckResult(passed=not found, metadata={"key": MetadataValue.json(keys),
                                                        "duplicate_keys_sample": MetadataValue.json(found)})
