"""Alerts: one message per event (a failed run, an ERROR-severity check failure, a stale table)
to a Slack-compatible webhook and/or an SNS topic.

Both destinations are settings: ``LAKE_ALERT_WEBHOOK_URL`` (a secret: whoever holds a Slack
webhook URL can post to the channel) and ``LAKE_ALERT_SNS_TOPIC_ARN``. The code location gives
them to :class:`Alerter` as ``EnvVar``\\ s (:func:`lake_assets.failures.build_alerting`), so
the UI's resource page shows the variables' names, never the URL. The text of a message
never holds a secret either: any URL's ``user:password@``, credential-looking query
parameters and the webhook URL itself are removed (:func:`redact`), because error messages
quote whatever the failing code had at hand (an S3 URL with keys, a connection string).

Delivering is best effort: an alert that cannot be delivered is logged, never raised, since
the sensor or ``lake run`` sending it has already recorded the failure in the lake and must
not fail itself (a failing sensor would retry and record nothing new).
"""
from __future__ import annotations

import json
import logging
import os
import re
import urllib.request
from typing import Any, Mapping

from dagster import ConfigurableResource, EnvVar
from pydantic import Field

LOG = logging.getLogger("lake_assets.alerts")

WEBHOOK_URL_ENV = "LAKE_ALERT_WEBHOOK_URL"
SNS_TOPIC_ARN_ENV = "LAKE_ALERT_SNS_TOPIC_ARN"

#: What an event's ``kind`` is called in a message's first line and the SNS subject.
TITLES = {
    "run_failure": "Run failed",
    "check_failure": "Check failed (ERROR)",
    "stale": "Table stale",
}

#: SNS refuses a subject longer than this (and any line break in it).
SNS_SUBJECT_MAX = 100
#: A message stays readable in a chat client: at most this many detail lines, each this long.
MAX_DETAILS = 10
MAX_LINE = 300

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")
_SECRET_PARAM = re.compile(
    r"(?i)(?P<name>[\w-]*(?:password|passwd|pwd|token|secret|signature|credential|api[_-]?key|access[_-]?key)"
    r"[\w-]*)=(?P<value>[^&\s'\"]+)")
_SECRET_ENV = re.compile(r"(?i)(secret|password|passwd|token|credential|private|api_?key|access_?key|webhook)")


def strip_userinfo(url: str) -> str:
    """``url`` without ``user:password@``: the UI link may be given with basic-auth credentials."""
    return _USERINFO.sub(r"\g<scheme>", url)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` fit for a chat channel or the lake: no credentials in URLs or query strings, none
    of ``secrets`` and no value of a secret-looking environment variable (``AWS_SECRET_ACCESS_KEY``,
    ``*_TOKEN``, ``*_PASSWORD``, ``LAKE_ALERT_WEBHOOK_URL``; values shorter than 8 characters are
    left, since they would mostly match innocent words)."""
    if not text:
        return text
    found = [s for s in secrets if s]
    found += [v for k, v in os.environ.items() if _SECRET_ENV.search(k) and v and len(v) >= 8]
    for secret in sorted(set(found), key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _USERINFO.sub(r"\g<scheme>", text)
    return _SECRET_PARAM.sub(lambda m: f"{m.group('name')}=***", text)


def _line(text: Any) -> str:
    """One line of at most MAX_LINE characters (a multi-line error message joined)."""
    line = " ".join(str(text).split())
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 3] + "..."


def format_message(event: Mapping[str, Any]) -> tuple[str, str]:
    """The SNS subject and the text (the webhook's ``text`` and the SNS message) of an event.

    An event is a dict: ``kind`` (``run_failure``, ``check_failure``, ``stale`` or any word),
    and any of ``job``, ``run_id``, ``assets`` (list), ``asset``, ``partitions`` (text),
    ``checks`` (list of ``asset:check``), ``details`` (list of lines), ``record`` (the lake
    path of the failure record) and ``link`` (the run in the UI). The text names each that is
    given, one per line, so a reader sees what failed, where, and where to look, without
    opening anything.
    """
    kind = str(event.get("kind") or "alert")
    title = TITLES.get(kind, kind.replace("_", " ").capitalize())
    assets = list(event.get("assets") or ([event["asset"]] if event.get("asset") else []))
    what = event.get("job") or ", ".join(assets) or "lake"
    if kind == "check_failure" and event.get("checks"):
        what = ", ".join(event["checks"])
    partitions = event.get("partitions")
    subject = f"[lake] {title}: {what}" + (f" [{partitions}]" if partitions else "")

    lines = [subject]
    if event.get("job"):
        lines.append(f"Job: {event['job']}")
    if assets:
        lines.append(f"Asset: {', '.join(assets)}")
    if partitions:
        lines.append(f"Partition: {partitions}")
    for check in event.get("checks") or []:
        lines.append(f"Check: {check}")
    details = [_line(d) for d in event.get("details") or []]
    if len(details) > MAX_DETAILS:
        details = details[:MAX_DETAILS] + [f"... and {len(details) - MAX_DETAILS} more"]
    lines += [f"- {d}" for d in details]
    if event.get("record"):
        lines.append(f"Record: {event['record']}")
    if event.get("link"):
        lines.append(f"Link: {strip_userinfo(str(event['link']))}")
    text = "\n".join(lines)

    subject = " ".join(subject.split()).encode("ascii", "replace").decode("ascii")
    if len(subject) > SNS_SUBJECT_MAX:
        subject = subject[: SNS_SUBJECT_MAX - 3] + "..."
    return subject, text


def _value(v: Any) -> str | None:
    """A field's value: an ``EnvVar`` is resolved here when the resource is used outside a run
    or sensor (``lake run`` calls the code location's own resource, not initialized by Dagster)."""
    if isinstance(v, EnvVar):
        return v.get_value()
    return v or None


def _sns_region(topic_arn: str) -> str | None:
    parts = topic_arn.split(":")
    return parts[3] if len(parts) > 5 and parts[3] else None


class Alerter(ConfigurableResource):
    """Where alerts go: a Slack-compatible webhook and/or an SNS topic; neither set, alerts are
    only logged. Give the webhook URL as ``EnvVar("LAKE_ALERT_WEBHOOK_URL")`` so the UI never
    shows it. SNS is reached with boto3's usual credentials, region taken from the topic's ARN
    and endpoint from ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_SNS`` (LocalStack, moto)."""

    webhook_url: str | None = Field(
        default=None, description=f"{WEBHOOK_URL_ENV}: a Slack-compatible incoming webhook (a secret)")
    sns_topic_arn: str | None = Field(
        default=None, description=f"{SNS_TOPIC_ARN_ENV}: an SNS topic to publish alerts to")
    timeout_seconds: float = Field(default=10.0, description="how long one delivery may take")

    @property
    def channels(self) -> list[str]:
        """The destinations configured: ``webhook``, ``sns``."""
        return [name for name, v in (("webhook", self.webhook_url), ("sns", self.sns_topic_arn)) if _value(v)]

    def send(self, event: Mapping[str, Any], log: logging.Logger | None = None) -> list[str]:
        """Deliver one message for ``event`` (see :func:`format_message`) to every destination;
        returns those it reached. A destination that fails is logged, not raised."""
        log = log or LOG
        webhook, topic = _value(self.webhook_url), _value(self.sns_topic_arn)
        subject, text = format_message(event)
        secrets = tuple(s for s in (webhook,) if s)
        subject, text = redact(subject, secrets), redact(text, secrets)
        delivered = []
        if webhook:
            try:
                self._post_webhook(webhook, text)
                delivered.append("webhook")
            except Exception as exc:  # noqa: BLE001 - an alert is best effort; the failure is in the lake
                log.warning(f"alert not delivered to the webhook: {type(exc).__name__}: {redact(str(exc), secrets)}")
        if topic:
            try:
                self._publish_sns(topic, subject, text)
                delivered.append("sns")
            except Exception as exc:  # noqa: BLE001
                log.warning(f"alert not delivered to SNS topic {topic}: "
                            f"{type(exc).__name__}: {redact(str(exc), secrets)}")
        if not webhook and not topic:
            log.info(f"alert (no destination configured): {subject}")
        return delivered

    def _post_webhook(self, url: str, text: str) -> None:
        body = json.dumps({"text": text}).encode("utf-8")
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        # A configured http(s) URL, the one place the secret is used.
        with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:  # noqa: S310
            response.read()

    def _publish_sns(self, topic_arn: str, subject: str, text: str) -> None:
        import boto3
        from botocore.config import Config

        config = Config(connect_timeout=self.timeout_seconds, read_timeout=self.timeout_seconds,
                        retries={"max_attempts": 2})
        client = boto3.client("sns", region_name=_sns_region(topic_arn), config=config)
        client.publish(TopicArn=topic_arn, Subject=subject, Message=text)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Alerter":
        """The destinations the environment sets, as ``EnvVar``\\ s (resolved when used), so
        neither value is part of the definitions the UI shows; unset, that destination is off."""
        env = os.environ if env is None else env
        return cls(webhook_url=EnvVar(WEBHOOK_URL_ENV) if env.get(WEBHOOK_URL_ENV) else None,
                   sns_topic_arn=EnvVar(SNS_TOPIC_ARN_ENV) if env.get(SNS_TOPIC_ARN_ENV) else None)
