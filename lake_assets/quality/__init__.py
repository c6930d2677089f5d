"""Data quality shared by every domain: rules as data, reject rows, checks and metrics."""
