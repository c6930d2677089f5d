"""What kind of failure an object-store or database error is: the one place that reads error texts.

The AWS SDK behind Arrow's filesystem reports failures as ``OSError`` with the
service's code in the text; boto3 raises its own classes; SQLAlchemy wraps the
database driver's. All are sorted here into the few kinds the lake acts on: retry
(transient: an endpoint or server that does not answer, a dropped connection,
5xx), or tell the person what to fix (refused credentials, a missing bucket or
database), which no retry can.
"""
from __future__ import annotations

import re

UNREACHABLE, CREDENTIALS, NO_BUCKET = "unreachable", "credentials", "no_bucket"  # the object store
DB_UNREACHABLE, DB_CREDENTIALS, NO_DATABASE = "db_unreachable", "db_credentials", "no_database"  # a database
#: Kinds no retry can fix.
PERMANENT = (CREDENTIALS, NO_BUCKET, DB_CREDENTIALS, NO_DATABASE)

#: Database servers' words for refused logins (PostgreSQL, MySQL) and for a database that is not there.
_DB_CREDENTIALS = ("authentication failed", "no pg_hba.conf entry", "access denied for user")
_DB_MISSING = ("unknown database",)


def kind(exc: BaseException) -> str | None:
    """One of the kinds above, or None (anything else)."""
    text = str(exc)
    db = _database_kind(exc)
    if db is not None:
        return db
    try:
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
    except ImportError:  # pragma: no cover - boto3 is a dependency
        ClientError = EndpointConnectionError = NoCredentialsError = ()  # type: ignore[assignment]
    code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
    if isinstance(exc, EndpointConnectionError) or (isinstance(exc, OSError) and (
            "NETWORK_CONNECTION" in text or "Couldn't connect" in text or "curlCode" in text)):
        return UNREACHABLE
    if isinstance(exc, NoCredentialsError) or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch") \
            or any(s in text for s in ("ACCESS_DENIED", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                                       "HTTP response code: 403")):
        return CREDENTIALS
    if code == "NoSuchBucket" or "NoSuchBucket" in text or "NO_SUCH_BUCKET" in text \
            or "bucket does not exist" in text.lower():
        return NO_BUCKET
    return None


def _database_kind(exc: BaseException) -> str | None:
    """A SQLAlchemy error's kind: refused login or missing database (permanent), anything else
    about the connection (refused, reset, closed by the server, timed out) ``db_unreachable``;
    None for what is not a connection problem (a bad statement, a constraint)."""
    try:
        import sqlalchemy.exc as sa_exc
    except ImportError:  # pragma: no cover - SQLAlchemy is a dependency
        return None
    if not isinstance(exc, sa_exc.DBAPIError):
        return None
    text = str(getattr(exc, "orig", None) or exc).lower()
    if any(s in text for s in _DB_CREDENTIALS) or re.search(r'role "[^"]*" does not exist', text):
        return DB_CREDENTIALS
    if any(s in text for s in _DB_MISSING) or re.search(r'database "[^"]*" does not exist', text):
        return NO_DATABASE
    if exc.connection_invalidated or isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)):
        return DB_UNREACHABLE
    return None


def reason(exc: BaseException) -> str:
    """A failure's first line, the driver's own for a database error (SQLAlchemy wraps it with its
    statement and parameters): what messages show."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def permanent(exc: BaseException) -> bool:
    """A failure retrying cannot fix (credentials refused, a bucket that is not there)."""
    return kind(exc) in PERMANENT


def transient_retry_policy(delay: float = 1.0):
    """Dagster's retry for steps safe to re-run whole (ingestion, extraction: both idempotent):
    three more tries after ``delay``, 3 and 7 times it (exponential backoff, with jitter), so a
    server restarting or failing over for some seconds is waited out. A step that knows its
    failure is permanent raises ``Failure(allow_retries=False)`` and fails at once.
    ``delay`` is ``LakeSettings.retry_delay_seconds`` (``LAKE_RETRY_DELAY_SECONDS``)."""
    from dagster import Backoff, Jitter, RetryPolicy

    return RetryPolicy(max_retries=3, delay=delay, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)
