from setuptools import find_packages, setup

setup(
    name="lake_assets",
    version="0.1.0",
    description="A medallion data lake on S3 (or a local folder) as a Dagster asset graph",
    packages=find_packages(exclude=["lake_assets_tests*"]),
    python_requires=">=3.11,<3.12",
    install_requires=[
        "dagster==1.13.27",
        "dagster-webserver==1.13.27",
        "dagster-aws==0.29.27",
        "dagster-pyspark==0.29.27",
        "dagster-pandera==0.29.27",
        "pyspark==4.3.0",
        "pandera[pyspark]",
        "pyarrow>=16",
        "numpy",  # line files split in blocks (ingest/lines.py); pinned in constraints.txt
        "boto3",
        "defusedxml",
        "ijson",
        "msgspec",  # ingestion's JSON decoder: each raw record validated, only its date field built
        "pycountry",  # ISO 3166 countries and ISO 4217 currencies (commerce rules, dim_country)
        "country_converter",  # UN regions for dim_country
        "sqlalchemy>=2",  # the orders source database
        "psycopg[binary]",  # PostgreSQL driver for sqlalchemy
        # The embedded catalog and `lake sql`. 1.4.4: the last release whose extension wheels
        # (httpfs for S3, tpcds for the TPC-DS generator) exist on PyPI; duckdb 2.x refuses them and
        # cannot download.
        "duckdb==1.4.4",
        "duckdb-ext-httpfs==1.4.4.20260205",
        "duckdb-ext-tpcds==1.4.4.20260205",
        # The analytics room: model tracking and registry (the client and its SQLite store; the
        # server and UI are not needed), the lake report's charts (plotly.js inlined), and the
        # browser that checks it (driving Debian's chromium; no browser download).
        "mlflow-skinny",
        "plotly",
    ],
    extras_require={
        "test": ["pytest", "pytest-timeout", "pytest-xdist", "moto[server]", "playwright"],
    },
    entry_points={"console_scripts": ["lake = lake_assets.cli:main"]},
)
