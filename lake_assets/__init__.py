"""lake_assets: a medallion data lake on S3 (or a local folder) as a Dagster code location."""
