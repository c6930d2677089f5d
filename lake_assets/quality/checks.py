"""Helpers for asset checks shared by every domain: pandera results and reject-rate thresholds."""
from __future__ import annotations

import json
from dataclasses import dataclass

from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue

from lake_assets import settings


def pandera_result(schemas: dict[str, object], frames: dict[str, object]) -> AssetCheckResult:
    """Validate each DataFrame with its ``pandera.pyspark`` schema; fail listing every error.

    pandera's PySpark backend records errors on ``df.pandera.errors`` instead of
    raising, so the check reads them from there.
    """
    errors: dict[str, object] = {}
    for name, schema in schemas.items():
        validated = schema.validate(frames[name])
        found = validated.pandera.errors
        if found:
            errors[name] = json.loads(json.dumps(found, default=str))
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
    def from_env(cls, prefix: str = "LAKE_REJECT_RATE") -> "RateThresholds":
        return cls(settings.env_float(f"{prefix}_WARN", 0.05), settings.env_float(f"{prefix}_ERROR", 0.25))


def rate_result(rejected: int, total: int, thresholds: RateThresholds, **metadata) -> AssetCheckResult:
    """Passes at or under ``warn``; above it fails with WARN, above ``error`` with ERROR (blocking)."""
    rate = rejected / total if total else 0.0
    return AssetCheckResult(
        passed=rate <= thresholds.warn,
        severity=AssetCheckSeverity.ERROR if rate > thresholds.error else AssetCheckSeverity.WARN,
        metadata={"rejected": rejected, "total": total, "reject_rate": round(rate, 6),
                  "warn_threshold": thresholds.warn, "error_threshold": thresholds.error, **metadata},
    )
