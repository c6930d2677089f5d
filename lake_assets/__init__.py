"""lake_assets: a medallion data lake on S3 (or a local folder) as a Dagster code location."""
import warnings

from dagster import BetaWarning, PreviewWarning

# BackfillPolicy and partitioned asset checks are the documented way to do what this
# project does; their beta/preview labels are noise for the people running it.
warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)
