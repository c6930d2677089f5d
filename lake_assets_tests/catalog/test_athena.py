"""Athena as a query engine: the request (on moto), typed results, paging, failures.

moto stores Athena queries without running them: it reports SUCCEEDED and answers
``get_query_results`` with results injected through its moto-api, in one page
(it ignores ``MaxResults`` and sends no ``NextToken``). Paging and failed queries
are therefore checked against botocore's Stubber, on the same code path.
"""
from __future__ import annotations

import datetime as dt
import decimal
import uuid

import boto3
import pyarrow as pa
import pytest
import requests
from botocore.stub import Stubber
from dagster_aws.athena import AthenaError

from lake_assets.catalog import athena
from lake_assets.catalog.athena import athena_batches, arrow_type, result_batches
from lake_assets.catalog.ddl import athena_database_ddl

COLUMNS = [("service", "varchar"), ("requests", "bigint"), ("status", "integer"), ("latency", "double"),
           ("ok", "boolean"), ("day", "date"), ("at", "timestamp"), ("revenue", "decimal")]


def _info(name: str, type_: str) -> dict:
    info = {"CatalogName": "hive", "SchemaName": "", "TableName": "", "Name": name, "Label": name,
            "Type": type_, "Nullable": "UNKNOWN", "CaseSensitive": type_ == "varchar"}
    if type_ == "decimal":
        info.update(Precision=18, Scale=2)
    return info


def _row(*values: str | None) -> dict:
    return {"Data": [{} if v is None else {"VarCharValue": v} for v in values]}


@pytest.fixture
def athena_env(moto_server, s3_client, monkeypatch) -> dict:
    """A workgroup and a results bucket of the test's own, in the settings ``athena_batches`` reads."""
    workgroup, bucket = f"wg-{uuid.uuid4().hex[:8]}", f"results-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    client = boto3.client("athena", endpoint_url=moto_server, region_name="us-east-1")
    client.create_work_group(Name=workgroup)
    monkeypatch.setenv("LAKE_ATHENA_WORKGROUP", workgroup)
    monkeypatch.setenv("LAKE_ATHENA_OUTPUT", f"s3://{bucket}/athena/")
    return {"client": client, "workgroup": workgroup, "output": f"s3://{bucket}/athena/", "endpoint": moto_server}


def test_a_query_reaches_athena_and_injected_results_come_back_typed(athena_env):
    n = 2500  # more than one Athena page (1000 rows): moto still answers in one
    rows = [_row(*(name for name, _ in COLUMNS))]  # Athena's header row of a SELECT
    rows += [_row(f"svc{i % 3}", str(i), "200", "1.5", "true", "2024-03-05", "2024-03-05 10:11:12.123", "12.34")
             for i in range(n - 1)]
    rows.append(_row(None, None, None, "NaN", "false", None, None, None))
    answer = requests.post(f"{athena_env['endpoint']}/moto-api/static/athena/query-results", json={
        "region": "us-east-1", "results": [{"rows": rows, "column_info": [_info(*c) for c in COLUMNS]}]})
    assert answer.status_code == 201

    sql = "SELECT * FROM daily_activity WHERE date = DATE '2024-03-05'"
    schema, batches = athena_batches(sql, database="lake_logs")

    client = athena_env["client"]
    [execution_id] = client.list_query_executions(WorkGroup=athena_env["workgroup"])["QueryExecutionIds"]
    execution = client.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]
    assert execution["Query"] == sql
    assert execution["QueryExecutionContext"]["Database"] == "lake_logs"
    assert execution["WorkGroup"] == athena_env["workgroup"]
    assert execution["ResultConfiguration"]["OutputLocation"].startswith(athena_env["output"])

    assert schema == pa.schema([("service", pa.string()), ("requests", pa.int64()), ("status", pa.int32()),
                                ("latency", pa.float64()), ("ok", pa.bool_()), ("day", pa.date32()),
                                ("at", pa.timestamp("us")), ("revenue", pa.decimal128(18, 2))])
    batches = list(batches)
    assert len(batches) == 1  # what moto does: one page, whatever MaxResults
    result = pa.Table.from_batches(batches, schema)
    assert result.num_rows == n  # the header row is not data
    first = result.slice(0, 1).to_pylist()[0]
    assert first == {"service": "svc0", "requests": 0, "status": 200, "latency": 1.5, "ok": True,
                     "day": dt.date(2024, 3, 5), "at": dt.datetime(2024, 3, 5, 10, 11, 12, 123000),
                     "revenue": decimal.Decimal("12.34")}
    last = result.slice(n - 1).to_pylist()[0]
    assert last["service"] is None and last["requests"] is None and last["ok"] is False
    assert last["latency"] != last["latency"]  # NaN


def test_ddl_statements_run_through_athena(athena_env):
    """DDL answers carry no header row; moto's Athena records the database it creates."""
    schema, batches = athena_batches(athena_database_ddl("logs", "t_"))
    assert list(batches) == []
    assert athena_env["client"].get_database(CatalogName="AwsDataCatalog", DatabaseName="t_logs")


def test_the_output_location_is_required(monkeypatch):
    monkeypatch.delenv("LAKE_ATHENA_OUTPUT", raising=False)
    with pytest.raises(ValueError, match="set LAKE_ATHENA_OUTPUT to an s3:// folder"):
        athena_batches("SELECT 1")
    monkeypatch.setenv("LAKE_ATHENA_OUTPUT", "/tmp/results")
    with pytest.raises(ValueError, match="got '/tmp/results'"):
        athena_batches("SELECT 1")


def _stubbed() -> tuple:
    client = boto3.client("athena", region_name="us-east-1", endpoint_url="http://127.0.0.1:9")
    return client, Stubber(client)


def test_results_stream_page_by_page():
    client, stub = _stubbed()
    info = {"ResultSetMetadata": {"ColumnInfo": [_info("n", "bigint"), _info("name", "varchar")]}}
    stub.add_response("get_query_results", {"NextToken": "page-2", "ResultSet": {
        **info, "Rows": [_row("n", "name"), _row("1", "a"), _row("2", "b")]}},
        {"QueryExecutionId": "q", "MaxResults": 3})
    stub.add_response("get_query_results", {"ResultSet": {**info, "Rows": [_row("3", None)]}},
                      {"QueryExecutionId": "q", "MaxResults": 3, "NextToken": "page-2"})
    with stub:
        schema, batches = result_batches(client, "q", header=True, page_size=3)
        assert schema == pa.schema([("n", pa.int64()), ("name", pa.string())])
        first = next(batches)
        assert first.to_pylist() == [{"n": 1, "name": "a"}, {"n": 2, "name": "b"}]
        with pytest.raises(AssertionError):  # the second page is fetched only when asked for
            stub.assert_no_pending_responses()
        assert [b.to_pylist() for b in batches] == [[{"n": 3, "name": None}]]  # its first row is data
        stub.assert_no_pending_responses()


def test_a_failed_query_raises_athenas_reason(monkeypatch):
    monkeypatch.setenv("LAKE_ATHENA_OUTPUT", "s3://results/athena/")
    monkeypatch.delenv("LAKE_ATHENA_WORKGROUP", raising=False)
    client, stub = _stubbed()
    monkeypatch.setattr(athena, "_athena_client", lambda workgroup: client)
    stub.add_response("start_query_execution", {"QueryExecutionId": "q"}, {
        "QueryString": "SELECT x", "WorkGroup": "primary",
        "ResultConfiguration": {"OutputLocation": "s3://results/athena/"}})
    stub.add_response("get_query_execution", {"QueryExecution": {"Status": {"State": "RUNNING"}}},
                      {"QueryExecutionId": "q"})
    reason = "COLUMN_NOT_FOUND: line 1:8: Column 'x' cannot be resolved"
    stub.add_response("get_query_execution", {"QueryExecution": {
        "Status": {"State": "FAILED", "StateChangeReason": reason}}}, {"QueryExecutionId": "q"})
    with stub, pytest.raises(AthenaError, match="failed: COLUMN_NOT_FOUND: line 1:8: Column 'x' cannot be resolved"):
        athena_batches("SELECT x")


def test_athena_types_map_to_arrow():
    assert arrow_type({"Type": "decimal", "Precision": 10, "Scale": 3}) == pa.decimal128(10, 3)
    assert arrow_type({"Type": "decimal(38,6)"}) == pa.decimal128(38, 6)
    assert arrow_type({"Type": "varchar(12)"}) == pa.string()
    assert arrow_type({"Type": "timestamp(3)"}) == pa.timestamp("us")
    assert arrow_type({"Type": "real"}) == pa.float32()
    assert arrow_type({"Type": "array(varchar)"}) == pa.string()  # complex values stay as Athena renders them
    assert arrow_type({"Type": "timestamp with time zone"}) == pa.string()
