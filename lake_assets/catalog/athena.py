"""Athena as a query engine over the Glue catalog (``lake sql --engine athena``).

Queries go through dagster-aws's Athena client (:class:`dagster_aws.athena.AthenaClientResource`
builds the boto3 client from the AWS chain, ``AWS_ENDPOINT_URL`` included), but
submission, polling and results are ours: its ``execute_query`` sets no output
location or database and reads the whole result CSV into memory, whereas here the
result streams page by page (``get_query_results`` and its ``NextToken``) as typed
Arrow record batches, so a large result never sits in memory.

Settings, read at call time: ``LAKE_ATHENA_WORKGROUP`` (default ``primary``),
``LAKE_ATHENA_OUTPUT`` (``s3://...`` results location, required) and
``LAKE_ATHENA_TIMEOUT`` (seconds to wait for a query, default 600).
"""
from __future__ import annotations

import os
import re
import time
from typing import Any, Iterator

import pyarrow as pa
from dagster_aws.athena import AthenaError, AthenaTimeout

#: Rows per ``get_query_results`` call: Athena's maximum.
PAGE_SIZE = 1000

#: Athena result types (``ResultSetMetadata.ColumnInfo[].Type``) and their Arrow types; any
#: other (array, map, row, json, varbinary, timestamp with time zone, ...) stays a string,
#: as Athena renders it.
_ARROW_TYPES: dict[str, pa.DataType] = {
    "varchar": pa.string(), "char": pa.string(), "string": pa.string(),
    "bigint": pa.int64(), "integer": pa.int32(), "int": pa.int32(),
    "smallint": pa.int16(), "tinyint": pa.int8(),
    "double": pa.float64(), "float": pa.float32(), "real": pa.float32(),
    "boolean": pa.bool_(), "date": pa.date32(), "timestamp": pa.timestamp("us"),
}


def athena_settings() -> tuple[str, str, float]:
    """Workgroup, output location and timeout, from the environment (read at each call)."""
    output = os.environ.get("LAKE_ATHENA_OUTPUT", "").strip()
    if not output.startswith("s3://"):
        raise ValueError("Athena needs a results location: set LAKE_ATHENA_OUTPUT to an s3:// folder "
                         f"(e.g. s3://my-bucket/athena-results/){'; got ' + repr(output) if output else ''}")
    workgroup = os.environ.get("LAKE_ATHENA_WORKGROUP", "").strip() or "primary"
    return workgroup, output, float(os.environ.get("LAKE_ATHENA_TIMEOUT", "600"))


def arrow_type(column: dict[str, Any]) -> pa.DataType:
    """The Arrow type of an Athena result column (its ``ColumnInfo``)."""
    name = column.get("Type", "varchar").lower().strip()
    m = re.fullmatch(r"decimal(?:\((\d+)\s*,\s*(\d+)\))?", name)
    if m:  # Athena gives the precision and scale as fields; a spelled-out type is also read
        precision = int(m.group(1) or column.get("Precision") or 38)
        scale = int(m.group(2) or column.get("Scale") or 0)
        return pa.decimal128(precision, scale)
    return _ARROW_TYPES.get(re.sub(r"\(.*\)$", "", name), pa.string())  # varchar(10), timestamp(3)


def _athena_client(workgroup: str):
    """The boto3 Athena client, as dagster-aws's resource builds it (the AWS chain decides)."""
    from dagster_aws.athena import AthenaClientResource

    return AthenaClientResource(workgroup=workgroup).get_client().client


def _wait(client, execution_id: str, timeout: float) -> dict[str, Any]:
    """Poll until the query ends (backing off to 5 s); a failure raises Athena's reason.
    A timeout or an interrupt stops the query, so nothing keeps scanning (and billing)."""
    deadline, delay = time.monotonic() + timeout, 0.2
    try:
        while True:
            execution = client.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]
            status = execution["Status"]
            if status["State"] == "SUCCEEDED":
                return execution
            if status["State"] in ("FAILED", "CANCELLED"):
                raise AthenaError(f"Athena query {execution_id} {status['State'].lower()}: "
                                  f"{status.get('StateChangeReason', 'no reason given')}")
            if time.monotonic() + delay > deadline:
                raise AthenaTimeout(f"Athena query {execution_id} still {status['State']} after {timeout:g} s")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    except (AthenaTimeout, KeyboardInterrupt):
        client.stop_query_execution(QueryExecutionId=execution_id)
        raise


def _batch(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.RecordBatch:
    """One page of rows (every value a string, NULL an empty datum) as typed columns."""
    columns: list[list[str | None]] = [[] for _ in schema]
    for row in rows:
        data = row.get("Data", [])
        for i, column in enumerate(columns):
            column.append(data[i].get("VarCharValue") if i < len(data) else None)
    return pa.RecordBatch.from_arrays(
        [pa.array(c, pa.string()).cast(f.type) for c, f in zip(columns, schema)], schema=schema)


def result_batches(client, execution_id: str, *, header: bool,
                   page_size: int = PAGE_SIZE) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """A finished query's result: its schema (from the first page) and one batch per further page,
    fetched only as the iterator is consumed. ``header``: the first row holds the column names
    (Athena adds it to SELECT results, not to DDL or utility statements' ones)."""
    first = client.get_query_results(QueryExecutionId=execution_id, MaxResults=page_size)
    info = first["ResultSet"].get("ResultSetMetadata", {}).get("ColumnInfo", [])
    schema = pa.schema([pa.field(c.get("Label") or c["Name"], arrow_type(c)) for c in info])

    def pages() -> Iterator[pa.RecordBatch]:
        page, skip = first, int(header)
        while True:
            rows = page["ResultSet"].get("Rows", [])[skip:]
            skip = 0
            if rows:
                yield _batch(rows, schema)
            token = page.get("NextToken")
            if not token:
                return
            page = client.get_query_results(QueryExecutionId=execution_id, MaxResults=page_size,
                                            NextToken=token)

    return schema, pages()


def athena_batches(sql: str, *, database: str | None = None) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """Run one statement on Athena and stream its result as Arrow record batches.

    ``database``: the Glue database unqualified table names resolve in (``lake_<domain>``).
    Returns once the query has succeeded; raises :class:`dagster_aws.athena.AthenaError` with
    Athena's reason when it failed, :class:`~dagster_aws.athena.AthenaTimeout` past the timeout.
    """
    workgroup, output, timeout = athena_settings()
    client = _athena_client(workgroup)
    request: dict[str, Any] = {"QueryString": sql, "WorkGroup": workgroup,
                               "ResultConfiguration": {"OutputLocation": output}}
    if database:
        request["QueryExecutionContext"] = {"Database": database}
    execution_id = client.start_query_execution(**request)["QueryExecutionId"]
    execution = _wait(client, execution_id, timeout)
    return result_batches(client, execution_id, header=execution.get("StatementType") == "DML")
