"""Gold: the dimensional model and marts of the commerce contract, as Spark transformations.

Every table has an explicit StructType and is built only from silver (or
other gold tables) with deterministic expressions: rebuilding a table or a
partition from the same silver gives the same rows. Surrogate keys are hashes
of the version they name (``user_id``, ``updated_at``), so a late version
never renumbers the others.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lake_assets.domains.commerce import reference

UNKNOWN_USER_KEY = -1
MONEY = T.DecimalType(38, 2)


def _struct(*fields: tuple[str, T.DataType, bool]) -> T.StructType:
    return T.StructType([T.StructField(n, t, nullable) for n, t, nullable in fields])


S, TS, D, L, I, B = T.StringType(), T.TimestampType(), T.DateType(), T.LongType(), T.IntegerType(), T.BooleanType()

DIM_USERS = _struct(("user_key", L, False), ("user_id", S, True), ("email", S, True), ("country", S, True),
                    ("status", S, True), ("valid_from", TS, True), ("valid_to", TS, True), ("is_current", B, True))
DIM_COUNTRY = _struct(("country", S, False), ("name", S, False), ("region", S, True))
DIM_STATUS = _struct(("domain", S, False), ("status", S, False), ("description", S, False))
DIM_DATE = _struct(("date", D, False), ("year", I, False), ("quarter", I, False), ("month", I, False),
                   ("day", I, False), ("iso_week", I, False), ("day_of_week", I, False), ("is_weekend", B, False))
FACT_EVENTS = _struct(("event_id", S, False), ("user_id", S, False), ("user_key", L, False), ("event_type", S, False),
                      ("ts", TS, False), ("session_id", S, True), ("product_id", S, True))
FACT_TRANSACTIONS = _struct(("transaction_id", S, False), ("user_id", S, False), ("user_key", L, False),
                            ("amount", T.DecimalType(18, 2), False), ("currency", S, False), ("status", S, False),
                            ("created_at", TS, False))
FACT_USER_ACTIVITY = _struct(("user_id", S, False), ("date", D, False), ("events", L, False),
                             ("sessions", L, False), ("purchases", L, False))
DAILY_REVENUE = _struct(("date", D, False), ("country", S, True), ("currency", S, False), ("revenue", MONEY, False),
                        ("orders", L, False), ("refunded_amount", MONEY, False), ("avg_order_value", MONEY, True))
DAILY_ACTIVE_USERS = _struct(("date", D, False), ("country", S, True), ("active_users", L, False))
USER_LTV = _struct(("user_id", S, False), ("currency", S, False), ("first_purchase_date", D, True),
                   ("last_purchase_date", D, True), ("orders", L, False), ("lifetime_revenue", MONEY, False),
                   ("avg_order_value", MONEY, True))


def conform(df: DataFrame, schema: T.StructType, *extra: str) -> DataFrame:
    """Select exactly the schema's columns, cast to its types (plus ``extra`` columns kept as they are)."""
    return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields], *extra)


# -- dimensions --------------------------------------------------------------------
def dim_users(users: DataFrame) -> DataFrame:
    """SCD type 2 from every user version in silver, plus the unknown member (key -1)."""
    by_user = Window.partitionBy("user_id").orderBy("updated_at")
    versions = users.select(
        F.xxhash64("user_id", F.unix_micros("updated_at")).alias("user_key"),
        "user_id", "email", "country", "status",
        F.col("updated_at").alias("valid_from"),
        F.lead("updated_at").over(by_user).alias("valid_to"),
    ).withColumn("is_current", F.col("valid_to").isNull())
    unknown = users.sparkSession.createDataFrame(
        [(UNKNOWN_USER_KEY, None, None, None, None, None, None, None)], DIM_USERS)
    return conform(versions, DIM_USERS).unionByName(unknown)


def dim_country(spark: SparkSession) -> DataFrame:
    rows = [(c["country"], c["name"], c["region"]) for c in reference.countries()]
    return spark.createDataFrame(rows, DIM_COUNTRY)


def dim_status(spark: SparkSession) -> DataFrame:
    rows = [(domain, status, text) for domain, statuses in reference.STATUS_DESCRIPTIONS.items()
            for status, text in statuses.items()]
    return spark.createDataFrame(rows, DIM_STATUS)


def dim_date(fact_times: DataFrame) -> DataFrame:
    """Every date from the first to the last fact date (``fact_times`` has one timestamp column ``t``)."""
    bounds = fact_times.agg(F.to_date(F.min("t")).alias("lo"), F.to_date(F.max("t")).alias("hi"))
    days = bounds.where(F.col("lo").isNotNull()).select(F.explode(F.sequence("lo", "hi")).alias("date"))
    dow = (F.dayofweek("date") + 5) % 7 + 1  # Spark: 1 = Sunday; contract: 1 = Monday
    return conform(days.select(
        "date", F.year("date").alias("year"), F.quarter("date").alias("quarter"), F.month("date").alias("month"),
        F.dayofmonth("date").alias("day"), F.weekofyear("date").alias("iso_week"), dow.alias("day_of_week"),
        (dow >= 6).alias("is_weekend"),
    ), DIM_DATE)


# -- facts -----------------------------------------------------------------------------
def point_in_time(facts: DataFrame, time_col: str, dim: DataFrame) -> DataFrame:
    """Each fact with the key and country of the user version valid at its time.

    ``valid_from <= time < valid_to``; a fact earlier than the user's first
    version takes the first version; a user never seen takes the unknown member.
    """
    first = F.min("valid_from").over(Window.partitionBy("user_id"))
    versions = dim.where(F.col("user_id").isNotNull()).select(
        F.col("user_id").alias("_uid"), F.col("user_key").alias("_key"), F.col("country").alias("_country"),
        "valid_from", "valid_to", (F.col("valid_from") == first).alias("_first"))
    t = F.col(time_col)
    cond = ((F.col("user_id") == F.col("_uid"))
            & ((t >= F.col("valid_from")) | F.col("_first"))
            & (F.col("valid_to").isNull() | (t < F.col("valid_to"))))
    joined = facts.join(versions, cond, "left")
    return joined.withColumn("user_key", F.coalesce(F.col("_key"), F.lit(UNKNOWN_USER_KEY).cast("bigint"))) \
                 .withColumn("user_country", F.col("_country")) \
                 .drop("_uid", "_key", "_country", "valid_from", "valid_to", "_first")


def fact_events(events: DataFrame, dim: DataFrame) -> DataFrame:
    out = point_in_time(events, "ts", dim)
    return conform(out, FACT_EVENTS, F.to_date("ts").alias("_event_date"))


def fact_transactions(transactions: DataFrame, dim: DataFrame) -> DataFrame:
    out = point_in_time(transactions, "created_at", dim)
    return conform(out, FACT_TRANSACTIONS, F.to_date("created_at").alias("_event_date"))


def fact_user_activity(events: DataFrame, transactions: DataFrame) -> DataFrame:
    """(user_id, date): events, distinct non-null sessions, completed transactions."""
    ev = events.groupBy("user_id", F.to_date("ts").alias("date")).agg(
        F.count(F.lit(1)).alias("events"), F.countDistinct("session_id").alias("sessions"))
    tx = transactions.where(F.col("status") == "completed").groupBy(
        "user_id", F.to_date("created_at").alias("date")).agg(F.count(F.lit(1)).alias("purchases"))
    out = ev.join(tx, ["user_id", "date"], "full_outer").fillna(0, ["events", "sessions", "purchases"])
    return conform(out, FACT_USER_ACTIVITY)


# -- marts ----------------------------------------------------------------------------------
def _with_country(facts: DataFrame, dim: DataFrame) -> DataFrame:
    """The country of the user version a fact took (null for the unknown member)."""
    return facts.join(dim.select("user_key", F.col("country").alias("country")), "user_key", "left")


def _amount_if(status: str) -> Column:
    return F.when(F.col("status") == status, F.col("amount"))


def daily_revenue(transactions: DataFrame, dim: DataFrame) -> DataFrame:
    """(date, country, currency) of completed and refunded transactions."""
    tx = _with_country(transactions.where(F.col("status").isin("completed", "refunded")), dim)
    out = tx.groupBy(F.to_date("created_at").alias("date"), "country", "currency").agg(
        F.coalesce(F.sum(_amount_if("completed")), F.lit(0)).alias("revenue"),
        F.count(_amount_if("completed")).alias("orders"),
        F.coalesce(F.sum(_amount_if("refunded")), F.lit(0)).alias("refunded_amount"),
    )
    out = out.withColumn("avg_order_value", F.when(
        F.col("orders") > 0, F.round(F.col("revenue") / F.col("orders"), 2)))
    return conform(out, DAILY_REVENUE)


def daily_active_users(events: DataFrame, dim: DataFrame) -> DataFrame:
    """(date, country): distinct users with an event, in the country of the version at each event."""
    ev = _with_country(events, dim)
    out = ev.groupBy(F.to_date("ts").alias("date"), "country").agg(
        F.countDistinct("user_id").alias("active_users"))
    return conform(out, DAILY_ACTIVE_USERS)


def user_ltv(transactions: DataFrame) -> DataFrame:
    """(user_id, currency) over all time: completed purchases, minus refunds."""
    completed = _amount_if("completed")
    day = F.to_date("created_at")
    out = transactions.where(F.col("status").isin("completed", "refunded")).groupBy("user_id", "currency").agg(
        F.min(F.when(F.col("status") == "completed", day)).alias("first_purchase_date"),
        F.max(F.when(F.col("status") == "completed", day)).alias("last_purchase_date"),
        F.count(completed).alias("orders"),
        F.coalesce(F.sum(completed), F.lit(0)).alias("_completed"),
        F.coalesce(F.sum(_amount_if("refunded")), F.lit(0)).alias("_refunded"),
    )
    out = out.withColumn("lifetime_revenue", F.col("_completed") - F.col("_refunded")).withColumn(
        "avg_order_value", F.when(F.col("orders") > 0, F.round(F.col("_completed") / F.col("orders"), 2)))
    return conform(out, USER_LTV)
