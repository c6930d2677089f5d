"""What kind of failure an object-store error is: the one place that reads SDK error texts.

The AWS SDK behind Arrow's filesystem reports failures as ``OSError`` with the
service's code in the text; boto3 raises its own classes. Both are sorted here
into the few kinds the lake acts on: retry (transient), or tell the person what
to fix (unreachable endpoint, refused credentials, missing bucket).
"""
from __future__ import annotations

UNREACHABLE, CREDENTIALS, NO_BUCKET = "unreachable", "credentials", "no_bucket"
#: Kinds no retry can fix.
PERMANENT = (CREDENTIALS, NO_BUCKET)


def kind(exc: BaseException) -> str | None:
    """``unreachable``, ``credentials``, ``no_bucket``, or None (anything else)."""
    text = str(exc)
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


def permanent(exc: BaseException) -> bool:
    """A failure retrying cannot fix (credentials refused, a bucket that is not there)."""
    return kind(exc) in PERMANENT


def transient_retry_policy():
    """Dagster's retry for steps safe to re-run whole (ingestion, extraction: both idempotent):
    three more tries, exponential backoff with jitter. A step that knows its failure is
    permanent raises ``Failure(allow_retries=False)`` and fails at once."""
    from dagster import Backoff, Jitter, RetryPolicy

    return RetryPolicy(max_retries=3, delay=1, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)
