"""The commerce contract (``shared/contracts/commerce.md``) as declarative data: one spec per dataset.

Adding an alias or a column is one line here: silver's alias mapping, casting,
rules, deduplication and schemas, the metrics, the checks and the generator
tests all read these specs. No Spark import.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from lake_assets.domains.commerce import reference

#: Text values that mean null once trimmed.
NULL_TOKENS = ("", "null", "NULL", "N/A", "-")
#: Timestamps before this are impossible, as are those more than a day after ingestion.
MIN_TIMESTAMP = "2000-01-01T00:00:00Z"

EVENT_TYPES = ("page_view", "product_view", "add_to_cart", "checkout", "purchase", "login", "logout")
USER_STATUSES = ("active", "suspended", "closed")
TRANSACTION_STATUSES = ("pending", "completed", "failed", "refunded")


@dataclass(frozen=True)
class Col:
    """A canonical column: its Spark type, the names producers also use, and its allowed values.

    ``allowed`` is a tuple of values (``invalid_value:<name>`` outside it);
    ``non_negative`` and ``needs_at`` are the contract's other value rules.
    """

    name: str
    type: str  # "string" | "timestamp" | "decimal(18,2)"
    aliases: tuple[str, ...] = ()
    nullable: bool = False
    allowed: tuple[str, ...] | None = None
    non_negative: bool = False
    needs_at: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        """Every name the column arrives under, the canonical one first (the first present wins)."""
        return (self.name, *self.aliases)


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of the contract: columns, primary key, dating column and deduplication."""

    name: str
    columns: tuple[Col, ...]
    primary_key: tuple[str, ...]
    date_column: str
    #: "earliest:<column>": the row with the smallest value wins; "latest_delivery": the last delivered wins.
    dedup: str
    dedup_key: tuple[str, ...] = field(default=())

    @cached_property
    def by_name(self) -> dict[str, Col]:
        return {c.name: c for c in self.columns}

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def known_names(self) -> tuple[str, ...]:
        """Every canonical name and alias: anything else goes to ``_extra``."""
        return tuple(n for c in self.columns for n in c.names)

    @property
    def timestamp_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.type == "timestamp")

    @property
    def rule_names(self) -> tuple[str, ...]:
        """Every rule a row of this dataset can break, in the order ``reason`` picks the first."""
        names = ["malformed_record", "missing_primary_key"]
        names += [f"missing_value:{c.name}" for c in self.columns
                  if not c.nullable and c.name not in self.primary_key]
        names += [f"invalid_type:{c.name}" for c in self.columns if c.type != "string"]
        names += ["impossible_timestamp", "before_lake_start"]
        names += [f"invalid_value:{c.name}" for c in self.columns if c.allowed or c.non_negative or c.needs_at]
        names += ["duplicate"]
        return tuple(names)


EVENTS = DatasetSpec(
    name="events",
    columns=(
        Col("event_id", "string", ("eventId",)),
        Col("user_id", "string", ("userId",)),
        Col("event_type", "string", ("type",), allowed=EVENT_TYPES),
        Col("ts", "timestamp", ("timestamp", "event_time")),
        Col("session_id", "string", nullable=True),
        Col("product_id", "string", nullable=True),
    ),
    primary_key=("event_id",),
    date_column="ts",
    dedup="earliest:ts",
)

USERS = DatasetSpec(
    name="users",
    columns=(
        Col("user_id", "string", ("userId",)),
        Col("email", "string", needs_at=True),
        Col("country", "string", ("country_code",), allowed=reference.COUNTRY_CODES),
        Col("status", "string", allowed=USER_STATUSES),
        Col("created_at", "timestamp"),
        Col("updated_at", "timestamp", ("modified_at",)),
    ),
    primary_key=("user_id", "updated_at"),
    date_column="updated_at",
    dedup="latest_delivery",
)

TRANSACTIONS = DatasetSpec(
    name="transactions",
    columns=(
        Col("transaction_id", "string", ("txn_id",)),
        Col("user_id", "string", ("userId",)),
        Col("amount", "decimal(18,2)", ("total",), non_negative=True),
        Col("currency", "string", allowed=reference.CURRENCY_CODES),
        Col("status", "string", allowed=TRANSACTION_STATUSES),
        Col("created_at", "timestamp", ("created",)),
    ),
    primary_key=("transaction_id",),
    date_column="created_at",
    dedup="latest_delivery",
)

DATASETS: dict[str, DatasetSpec] = {d.name: d for d in (EVENTS, USERS, TRANSACTIONS)}
