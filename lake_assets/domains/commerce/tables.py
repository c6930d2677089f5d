"""The commerce lake's tables, declared once: the IO manager, the catalogs and the CLI read these."""
from pyspark.sql import types as T

from lake_assets.catalog.tables import Table
from lake_assets.domains.commerce import gold, silver
from lake_assets.domains.commerce.spec import DATASETS
from lake_assets.quality.rules import REJECT_SCHEMA

DOMAIN = "commerce"
#: The reject columns as written (``_partition_date`` picks the partition and stays out of the files).
_QUARANTINE_SCHEMA = T.StructType([f for f in REJECT_SCHEMA.fields if not f.name.startswith("_")])

SILVER = {
    name: Table(DOMAIN, f"silver_{name}", "silver", f"silver/{name}", silver.silver_schema(spec),
                f"Canonical, typed, deduplicated {name}, with _extra (unknown columns as JSON) and lineage.",
                asset=f"silver_{name}", partitioning="event_date")
    for name, spec in DATASETS.items()
}
QUARANTINE = {
    name: Table(DOMAIN, f"quarantine_{name}", "quarantine", f"quarantine/{name}", _QUARANTINE_SCHEMA,
                f"Every {name} row that broke a rule or lost deduplication: reason, reasons, the record as JSON.",
                asset=f"quarantine_{name}", partitioning="event_date")
    for name in DATASETS
}


def _gold(name: str, folder: str, schema: T.StructType, description: str, partitioned: bool = True) -> Table:
    return Table(DOMAIN, name, "gold", f"gold/{folder}/{name}", schema, description, asset=name,
                 partitioning="event_date" if partitioned else None)


GOLD = {t.name: t for t in (
    _gold("dim_users", "dim", gold.DIM_USERS, "SCD type 2 users: one row per version, valid_from/valid_to; "
          "key -1 is the unknown member.", partitioned=False),
    _gold("dim_country", "dim", gold.DIM_COUNTRY, "ISO 3166 countries with their UN region.", partitioned=False),
    _gold("dim_status", "dim", gold.DIM_STATUS, "Allowed user and transaction statuses and event types.",
          partitioned=False),
    _gold("dim_date", "dim", gold.DIM_DATE, "Every date from the first to the last fact date.", partitioned=False),
    _gold("fact_events", "fact", gold.FACT_EVENTS, "One row per event with the user version valid at its time."),
    _gold("fact_transactions", "fact", gold.FACT_TRANSACTIONS,
          "One row per transaction (refunds are their own) with the user version valid at its time."),
    _gold("fact_user_activity", "fact", gold.FACT_USER_ACTIVITY, "(user_id, date): events, sessions, purchases."),
    _gold("daily_revenue", "mart", gold.DAILY_REVENUE,
          "(date, country, currency): completed revenue and orders, refunds, average order value."),
    _gold("daily_active_users", "mart", gold.DAILY_ACTIVE_USERS,
          "(date, country): distinct users with an event, in the country they had at the time."),
    _gold("user_ltv", "mart", gold.USER_LTV, "(user_id, currency) over all time: orders and lifetime revenue.",
          partitioned=False),
)}

TABLES = (*SILVER.values(), *QUARANTINE.values(), *GOLD.values())
