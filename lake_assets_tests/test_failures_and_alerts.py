"""Failed runs kept in the lake and announced once (issue 15, parts 2 and 3).

Toy jobs fail for real, in process, against a real Dagster instance and a local lake: a step
raises (its message quoting an S3 URL with keys, as a careless error message would) and a
blocking ERROR-severity check fails. The sensors are then evaluated as the daemon would
(``build_run_status_sensor_context``) and ``lake run``'s path (``record_outcome``) is called,
and what arrives is read where it lands: the JSON record in the lake, the JSON a webhook
server on 127.0.0.1 received, the message moto's SNS delivered to an SQS queue. Nothing
here needs Spark.
"""
from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetSelection,
    BackfillPolicy,
    DailyPartitionsDefinition,
    Definitions,
    EnvVar,
    Output,
    asset,
    asset_check,
    build_run_status_sensor_context,
    define_asset_job,
)

from lake_assets.alerts import Alerter, format_message
from lake_assets.failures import (
    build_alerting,
    lake_check_failure_sensor,
    lake_run_failure_sensor,
    record_outcome,
)
from lake_assets.lake import LakeStorage
from lake_assets.resources import LakeResource

DAYS = DailyPartitionsDefinition(start_date="2024-01-01")
SINGLE_RUN = BackfillPolicy.single_run()
#: Credentials a failing step quotes in its error: they must reach neither the lake nor a channel.
ACCESS_KEY, SECRET_KEY = "AKIAEXAMPLEKEY", "wJalrXUtnFEMIsecretvalue"
LEAKY_URL = f"s3://{ACCESS_KEY}:{SECRET_KEY}@bucket/raw/orders.json"
#: The secret part of a Slack webhook URL, and the password of the UI's address.
WEBHOOK_TOKEN = "XXsecretWEBHOOKtoken42"
UI_PASSWORD = "hunter2pass"
UI_LINK = "https://dagster.example.com"


@asset(key=["toy", "parsed"], partitions_def=DAYS, backfill_policy=SINGLE_RUN)
def toy_parsed():
    raise ValueError(f"3 malformed rows in {LEAKY_URL}")


@asset(key=["toy", "orders"], partitions_def=DAYS, backfill_policy=SINGLE_RUN,
       check_specs=[AssetCheckSpec("rows_accounted", asset=["toy", "orders"], blocking=True)])
def toy_orders():
    yield Output(1)
    yield AssetCheckResult(check_name="rows_accounted", passed=False, severity=AssetCheckSeverity.ERROR,
                           description="2 rows lost between bronze and silver")


@asset(key=["toy", "daily"], partitions_def=DAYS, backfill_policy=SINGLE_RUN,
       check_specs=[AssetCheckSpec("late_share", asset=["toy", "daily"]),
                    AssetCheckSpec("null_share", asset=["toy", "daily"])])
def toy_daily():
    yield Output(1)
    yield AssetCheckResult(check_name="late_share", passed=False, severity=AssetCheckSeverity.ERROR,
                           description="41% of events arrived late")
    yield AssetCheckResult(check_name="null_share", passed=False, severity=AssetCheckSeverity.WARN,
                           description="2% null countries")


@asset(key=["toy", "revenue"])
def toy_revenue():
    return 1


@asset_check(asset=toy_revenue, name="freshness", blocking=False)
def toy_freshness():
    """As part 5's freshness checks: an unpartitioned run judging yesterday's partition."""
    return AssetCheckResult(passed=False, severity=AssetCheckSeverity.ERROR,
                            metadata={"expected_partition": "2024-01-04", "deadline": "2024-01-05T06:00:00+00:00"})


TOY = Definitions(
    assets=[toy_parsed, toy_orders, toy_daily, toy_revenue],
    asset_checks=[toy_freshness],
    jobs=[define_asset_job("toy_failing_job", selection=[toy_parsed, toy_orders]),
          define_asset_job("toy_checked_job", selection=[toy_daily]),
          define_asset_job("toy_freshness_job", selection=AssetSelection.checks(toy_freshness))],
)


# -- where alerts land ---------------------------------------------------------------------------
class Webhook:
    """A Slack-like incoming webhook on 127.0.0.1: keeps every POST; answers ``status``."""

    def __init__(self):
        self.received: list[dict] = []
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hook.received.append({"path": self.path, "content_type": self.headers.get("Content-Type"),
                                      "json": json.loads(body)})
                self.send_response(hook.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T0/B0/{WEBHOOK_TOKEN}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def texts(self) -> list[str]:
        return [r["json"]["text"] for r in self.received]


@pytest.fixture
def webhook(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # a proxy in the environment must not take the POST
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    hook = Webhook()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


class SnsQueue:
    """An SNS topic on moto's server with an SQS queue subscribed: what a subscriber receives."""

    def __init__(self, endpoint: str):
        import boto3

        self.sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
        sns = boto3.client("sns", endpoint_url=endpoint, region_name="us-east-1")
        name = f"lake-alerts-{uuid.uuid4().hex[:8]}"
        self.queue_url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url,
                                                  AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.topic_arn = sns.create_topic(Name=name)["TopicArn"]
        sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn)

    def receive(self) -> list[dict]:
        """Notifications not received before (each is deleted once read): ``Subject`` and ``Message``."""
        out = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                           WaitTimeSeconds=1).get("Messages", [])
            if not got:
                return out
            for m in got:
                out.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])


@pytest.fixture
def sns_queue(moto_server) -> SnsQueue:
    return SnsQueue(moto_server)


@pytest.fixture
def alert_env(monkeypatch, webhook, sns_queue):
    """The settings a deployment gives: both destinations and a UI address with basic-auth credentials."""
    monkeypatch.setenv("LAKE_ALERT_WEBHOOK_URL", webhook.url)
    monkeypatch.setenv("LAKE_ALERT_SNS_TOPIC_ARN", sns_queue.topic_arn)
    monkeypatch.setenv("LAKE_UI_URL", f"https://admin:{UI_PASSWORD}@dagster.example.com/")


@pytest.fixture
def resources(alert_env, lake_root) -> dict:
    """What the code location gives the sensors: its ``lake`` and the ``alerter`` build_alerting makes."""
    return {"lake": LakeResource(root=lake_root), **build_alerting().resources}


def _no_secret(text: str, webhook: Webhook) -> None:
    for secret in (webhook.url, WEBHOOK_TOKEN, UI_PASSWORD, ACCESS_KEY, SECRET_KEY):
        assert secret not in text


def _evaluate_failure_sensor(instance, result, resources) -> None:
    context = build_run_status_sensor_context(
        sensor_name="lake_run_failure_sensor", dagster_instance=instance, dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(), resources=resources,
    ).for_run_failure()
    lake_run_failure_sensor(context)


# -- the tests -----------------------------------------------------------------------------------
def test_failed_run_is_recorded_in_the_lake_and_announced_once(instance, lake_root, resources, webhook, sns_queue):
    """The run-failure sensor writes the run's record and sends one message to each destination;
    evaluated again (a daemon restarting mid-tick), it writes the same file and sends nothing, and
    ``lake run``'s path recording the same run does not announce it a second time either."""
    result = TOY.resolve_job_def("toy_failing_job").execute_in_process(
        instance=instance, partition_key="2024-01-02", raise_on_error=False)
    assert not result.success
    run_id = result.run_id
    storage = LakeStorage(lake_root)

    _evaluate_failure_sensor(instance, result, resources)

    path = f"rejected/system/jobs/toy_failing_job/{run_id}.json"
    first = storage.read_text(path)
    record = json.loads(first)
    assert record["job"] == "toy_failing_job" and record["run_id"] == run_id
    assert record["status"] == "FAILURE"
    assert record["partitions"] == {"start": "2024-01-02", "end": "2024-01-02"}
    assert record["failed_steps"] == [
        {"step": "toy__orders", "assets": ["toy/orders"], "error_class": "DagsterAssetCheckFailedError",
         "message": "1 blocking asset check failed with ERROR severity:\ntoy/orders: rows_accounted"},
        # The user's exception, not Dagster's wrapper; the keys in its URL removed.
        {"step": "toy__parsed", "assets": ["toy/parsed"], "error_class": "ValueError",
         "message": "3 malformed rows in s3://bucket/raw/orders.json"},
    ]
    assert record["failed_checks"] == ["toy/orders:rows_accounted"]
    assert record["run_error"] is None  # the steps' errors say it all
    assert record["link"] == f"{UI_LINK}/runs/{run_id}"
    assert dt.datetime.fromisoformat(record["time"]).utcoffset() == dt.timedelta(0)
    _no_secret(first, webhook)

    # One Slack-compatible message, naming the job, the partition, the check, the error and the link.
    assert len(webhook.received) == 1
    post = webhook.received[0]
    assert post["path"].endswith(WEBHOOK_TOKEN) and post["content_type"] == "application/json"
    assert set(post["json"]) == {"text"}
    text = post["json"]["text"]
    for expected in ("toy_failing_job", "Partition: 2024-01-02", "Check: toy/orders:rows_accounted",
                     "toy/parsed", "ValueError: 3 malformed rows in s3://bucket/raw/orders.json",
                     f"Link: {UI_LINK}/runs/{run_id}", f"Record: {path}"):
        assert expected in text, expected
    _no_secret(text, webhook)

    # The same message through SNS, delivered to the subscribed queue.
    notes = sns_queue.receive()
    assert len(notes) == 1
    assert notes[0]["Message"] == text
    assert notes[0]["Subject"] == "[lake] Run failed: toy_failing_job [2024-01-02]"

    # Evaluated again: the same record, no second alert.
    _evaluate_failure_sensor(instance, result, resources)
    assert storage.read_text(path) == first
    assert len(webhook.received) == 1 and sns_queue.receive() == []

    # `lake run`'s path over the same run: the same record, still no second alert.
    assert record_outcome(storage, instance, run_id) == path
    assert storage.read_text(path) == first
    assert len(webhook.received) == 1 and sns_queue.receive() == []
    # The alert markers are hidden: a listing of the records shows the record alone.
    assert [f.path for f in storage.list_files("rejected/system/jobs")] == [path]


def test_lake_run_records_a_range_run_and_the_sensor_adds_nothing(instance, lake_root, resources, webhook, sns_queue):
    """``lake run`` builds a range of dates in one run (range tags): ``record_outcome`` records its
    partitions as the range and announces it; the sensor, seeing the same run later, sends nothing."""
    tags = {"dagster/asset_partition_range_start": "2024-01-01",
            "dagster/asset_partition_range_end": "2024-01-03", "lake/trigger": "lake run"}
    result = TOY.resolve_job_def("toy_failing_job").execute_in_process(
        instance=instance, tags=tags, raise_on_error=False)
    assert not result.success
    storage = LakeStorage(lake_root)

    path = record_outcome(storage, instance, result.run_id)

    assert path == f"rejected/system/jobs/toy_failing_job/{result.run_id}.json"
    record = json.loads(storage.read_text(path))
    assert record["partitions"] == {"start": "2024-01-01", "end": "2024-01-03"}
    assert record["trigger"] == "lake run"
    assert [s["step"] for s in record["failed_steps"]] == ["toy__orders", "toy__parsed"]
    assert len(webhook.texts) == 1 and "Partition: 2024-01-01..2024-01-03" in webhook.texts[0]
    notes = sns_queue.receive()
    assert [n["Message"] for n in notes] == webhook.texts

    _evaluate_failure_sensor(instance, result, resources)
    assert json.loads(storage.read_text(path)) == record
    assert len(webhook.texts) == 1 and sns_queue.receive() == []


def test_non_blocking_error_check_alerts_once_and_warnings_do_not(instance, lake_root, resources, webhook, sns_queue):
    """A run that succeeds with a failed ERROR-severity (non-blocking) check: one alert naming the
    asset, partition, check and link; the failed WARN check alerts nobody; no failure record."""
    result = TOY.resolve_job_def("toy_checked_job").execute_in_process(
        instance=instance, partition_key="2024-01-05", raise_on_error=False)
    assert result.success
    context = build_run_status_sensor_context(
        sensor_name="lake_check_failure_sensor", dagster_instance=instance, dagster_run=result.dagster_run,
        dagster_event=result.get_run_success_event(), resources=resources)

    lake_check_failure_sensor(context)
    lake_check_failure_sensor(context)  # evaluated twice: still one alert

    assert len(webhook.texts) == 1
    text = webhook.texts[0]
    for expected in ("Check failed (ERROR)", "Asset: toy/daily", "Partition: 2024-01-05",
                     "Check: toy/daily:late_share", "41% of events arrived late",
                     f"Link: {UI_LINK}/runs/{result.run_id}"):
        assert expected in text, expected
    assert "null_share" not in text
    _no_secret(text, webhook)
    notes = sns_queue.receive()
    assert [n["Message"] for n in notes] == [text]
    assert notes[0]["Subject"] == "[lake] Check failed (ERROR): toy/daily:late_share [2024-01-05]"
    assert LakeStorage(lake_root).list_files("rejected/system/jobs") == []  # a successful run leaves no record


def test_a_stale_table_is_alerted_with_the_partition_its_check_names(instance, resources, webhook, sns_queue):
    """Part 5's freshness check fails (ERROR, not blocking) in a run with no partition: the alert
    names the asset, the check and the partition the check's metadata names."""
    result = TOY.resolve_job_def("toy_freshness_job").execute_in_process(instance=instance, raise_on_error=False)
    assert result.success
    lake_check_failure_sensor(build_run_status_sensor_context(
        sensor_name="lake_check_failure_sensor", dagster_instance=instance, dagster_run=result.dagster_run,
        dagster_event=result.get_run_success_event(), resources=resources))

    assert len(webhook.texts) == 1
    text = webhook.texts[0]
    for expected in ("Asset: toy/revenue", "Check: toy/revenue:freshness", "Partition: 2024-01-04",
                     "- deadline: 2024-01-05T06:00:00+00:00", f"Link: {UI_LINK}/runs/{result.run_id}"):
        assert expected in text, expected
    assert [n["Message"] for n in sns_queue.receive()] == [text]


def test_undelivered_alert_is_logged_not_raised_and_sent_later(instance, lake_root, webhook, caplog, monkeypatch):
    """A webhook answering 500: recording the run still succeeds, the failure is logged without the
    URL, and the alert is not marked sent, so recording the run again delivers it."""
    monkeypatch.setenv("LAKE_ALERT_WEBHOOK_URL", webhook.url)
    monkeypatch.delenv("LAKE_ALERT_SNS_TOPIC_ARN", raising=False)
    result = TOY.resolve_job_def("toy_failing_job").execute_in_process(
        instance=instance, partition_key="2024-01-02", raise_on_error=False)
    storage = LakeStorage(lake_root)
    webhook.status = 500

    with caplog.at_level("WARNING", logger="lake_assets"):
        path = record_outcome(storage, instance, result.run_id)

    assert storage.is_file(path)
    assert len(webhook.received) == 1  # tried once
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("lake_assets")]
    assert any("not delivered to the webhook" in w and "500" in w for w in warnings), warnings
    assert not any(WEBHOOK_TOKEN in w or webhook.url in w for w in warnings)

    webhook.status = 200
    record_outcome(storage, instance, result.run_id)
    record_outcome(storage, instance, result.run_id)
    assert len(webhook.received) == 2  # the retry delivered it; the third call found it sent
    assert webhook.texts[0] == webhook.texts[1]


def test_webhook_url_stays_out_of_the_definitions_the_ui_shows(instance, lake_root, monkeypatch):
    """Given through the environment, the webhook URL is an ``EnvVar`` in the definitions: the
    resource's config (what the UI's resource page shows) holds the variable's name, not the URL;
    the code location's own definitions, which carry the alerting, load."""
    from lake_assets.definitions import build_defs

    secret_url = f"https://hooks.slack.com/services/T0/B0/{WEBHOOK_TOKEN}"
    monkeypatch.setenv("LAKE_ALERT_WEBHOOK_URL", secret_url)
    monkeypatch.setenv("LAKE_ALERT_SNS_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:lake-alerts")
    alerting = build_alerting()
    alerter = alerting.resources["alerter"]

    assert isinstance(alerter.webhook_url, EnvVar) and alerter.webhook_url.env_var_name == "LAKE_ALERT_WEBHOOK_URL"
    assert alerter.channels == ["webhook", "sns"]
    assert WEBHOOK_TOKEN not in repr(alerter)
    assert WEBHOOK_TOKEN not in json.dumps(alerter.model_dump())

    defs = build_defs(lake_root)
    Definitions.validate_loadable(defs)  # the sensors' resources (lake, alerter) are all there
    repo = defs.get_repository_def()
    assert {"lake_run_failure_sensor", "lake_check_failure_sensor"} <= {s.name for s in repo.sensor_defs}
    # What the UI's resource page shows: the resource's configured values.
    shown = repo.get_top_level_resources()["alerter"].config_schema.as_field().default_value
    assert WEBHOOK_TOKEN not in json.dumps(shown) and shown["webhook_url"] == {"env": "LAKE_ALERT_WEBHOOK_URL"}

    # Unset, a destination is off rather than an EnvVar that fails when resolved.
    monkeypatch.delenv("LAKE_ALERT_WEBHOOK_URL")
    monkeypatch.delenv("LAKE_ALERT_SNS_TOPIC_ARN")
    assert build_alerting().resources["alerter"].channels == []


def test_a_stale_table_event_reads_like_the_others():
    """Part 5's stale tables send through the same ``Alerter.send``: the message names the asset,
    partitions and link, and a URL's credentials never reach it."""
    subject, text = format_message({
        "kind": "stale", "asset": "commerce/daily_revenue", "partitions": "2024-01-01..2024-01-03",
        "details": ["built before its input silver_transactions changed"],
        "link": "https://admin:pw@dagster.example.com/assets/commerce/daily_revenue"})
    assert subject == "[lake] Table stale: commerce/daily_revenue [2024-01-01..2024-01-03]"
    assert "Asset: commerce/daily_revenue" in text and "Partition: 2024-01-01..2024-01-03" in text
    assert "Link: https://dagster.example.com/assets/commerce/daily_revenue" in text and "pw@" not in text
    # Nothing configured: sending is a no-op that delivers nowhere and raises nothing.
    assert Alerter().send({"kind": "stale", "asset": "x"}) == []


def test_record_paths_and_redaction(monkeypatch):
    """The UI's ad-hoc materializations run as ``__ASSET_JOB``: their records must not land in a
    folder listings hide. Credentials in URLs, query strings and secret environment variables
    never survive :func:`redact`."""
    from lake_assets.alerts import redact
    from lake_assets.failures import record_path, run_partitions

    assert record_path("__ASSET_JOB", "r1") == "rejected/system/jobs/ASSET_JOB/r1.json"
    assert run_partitions({"dagster/partition": "2024-01-02"}) == {"start": "2024-01-02", "end": "2024-01-02"}
    assert run_partitions({}) is None
    monkeypatch.setenv("LAKE_ORDERS_DB_PASSWORD", "s3cretDbPassw0rd")
    text = redact("postgresql://etl:pw@db:5432/orders failed with s3cretDbPassw0rd; "
                  "see https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA123&X-Amz-Signature=abcdef&v=1")
    assert text == ("postgresql://db:5432/orders failed with ***; "
                    "see https://b.s3.amazonaws.com/k?X-Amz-Credential=***&X-Amz-Signature=***&v=1")


def test_failures_on_an_s3_lake(instance, s3_lake, s3_lake_root, s3_keys, alert_env, webhook, sns_queue):
    """On S3 the record is one object (read back with boto3's listing) and the alert marker a
    conditional PUT, so recording the run twice still sends one alert."""
    result = TOY.resolve_job_def("toy_failing_job").execute_in_process(
        instance=instance, partition_key="2024-01-02", raise_on_error=False)

    path = record_outcome(s3_lake, instance, result.run_id)
    record_outcome(s3_lake, instance, result.run_id)

    assert path in s3_keys(s3_lake_root, "rejected/system/jobs/")
    assert json.loads(s3_lake.read_text(path))["failed_checks"] == ["toy/orders:rows_accounted"]
    assert len(webhook.texts) == 1
    assert [n["Message"] for n in sns_queue.receive()] == webhook.texts
