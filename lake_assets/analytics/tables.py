"""The analytics room's tables and folders, declared once: the IO manager, the catalog and the report read these."""
from pyspark.sql import types as T

from lake_assets.catalog.tables import Table

DOMAIN = "analytics"

#: MLflow's artifact store (the models) when the lake is the store: ``<lake>/ml/models/mlflow``.
MODELS_ZONE = "ml/models"
#: The lake report: one self-contained HTML file.
REPORTS_ZONE = "reports"
REPORT_FILE = f"{REPORTS_ZONE}/lake_report.html"

PREDICTIONS_SCHEMA = T.StructType([
    T.StructField("user_id", T.StringType(), False),
    T.StructField("event_date", T.DateType(), False),  # the as-of date the features describe
    T.StructField("score", T.DoubleType(), False),  # P(completes a purchase in the next 7 days)
    T.StructField("model_version", T.IntegerType(), False),  # the registered model version that scored it
    T.StructField("scored_at", T.TimestampType(), False),
])


def features_table() -> Table:
    from lake_assets.analytics.features import FEATURES_SCHEMA

    return Table(DOMAIN, "user_features", "ml", "ml/features/user_features", FEATURES_SCHEMA,
                 "Per user and as-of date (event_date): recency, frequency and money over 7 and 28 days, events "
                 "by type, sessions, tenure, country; label: a completed purchase in the next 7 days (NULL until "
                 "those days are in the lake). Nothing from after the as-of date but the label.",
                 asset="user_features", partitioning="event_date")


PREDICTIONS = Table(
    DOMAIN, "purchase_propensity", "curated", "curated/predictions/purchase_propensity", PREDICTIONS_SCHEMA,
    "Every user active in the 28 days to event_date, scored by the champion purchase-propensity model: "
    "the probability of a completed purchase in the next 7 days, and the model version that gave it.",
    asset="purchase_propensity", partitioning="event_date")


def tables() -> tuple[Table, ...]:
    return (features_table(), PREDICTIONS)
