"""Translate botocore failures into stanch's action error hierarchy.

Owns: the single decision "is this AWS failure worth retrying?" and the wording of AWS error
messages (service, operation, AWS error code and, for access-denied errors, the IAM permission
that is missing). Every AWS call an action makes goes through :func:`aws_call`.

Must not touch: ``flows``, ``prefect``. No retries happen here: the engine retries
``TransientActionError`` with backoff; botocore's own retries are switched off in ``session.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ProxyConnectionError,
    ReadTimeoutError,
)

from integrations.errors import ActionError, PermanentActionError, TransientActionError

__all__ = ["aws_call", "classify_client_error", "error_code", "iam_permission", "translate"]

TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "ProvisionedThroughputExceededException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalError",
        "InternalServiceError",
        "InternalServerError",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "TransactionInProgressException",
        "EC2ThrottledException",
        "BandwidthLimitExceeded",
    }
)
"""AWS error codes that mean "try again later" whatever the HTTP status says."""

ACCESS_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnauthorizedAccess",
        "NotAuthorized",
        "AuthorizationError",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
    }
)

# IAM action names that differ from the API operation name.
_PERMISSION_OVERRIDES: dict[tuple[str, str], str] = {
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "HeadBucket"): "s3:ListBucket",
    ("s3", "ListObjectVersions"): "s3:ListBucketVersions",
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "GetBucketVersioning"): "s3:GetBucketVersioning",
    ("s3", "PutBucketVersioning"): "s3:PutBucketVersioning",
    ("s3", "CopyObject"): "s3:PutObject",
}


def iam_permission(service: str, operation: str) -> str:
    """The IAM action a call needs, e.g. ``iam:UpdateAccessKey``."""
    return _PERMISSION_OVERRIDES.get((service, operation), f"{service}:{operation}")


def error_code(exc: ClientError) -> str:
    """The AWS error code of a ``ClientError`` ('' when absent)."""
    return str(exc.response.get("Error", {}).get("Code", "") or "")


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def classify_client_error(exc: ClientError, service: str, operation: str) -> ActionError:
    """Map one ``ClientError`` to a transient or permanent action error with a readable message."""
    code = error_code(exc)
    status = _status(exc)
    aws_message = str(exc.response.get("Error", {}).get("Message", "") or "").strip()
    where = f"{service} {operation}"
    detail = f": {aws_message}" if aws_message else ""
    if code in ACCESS_DENIED_CODES:
        perm = iam_permission(service, operation)
        msg = f"{where} failed with {code}: the responder role is missing permission {perm}{detail}"
        return PermanentActionError(msg, operation=operation, aws_code=code)
    if code in TRANSIENT_CODES or status >= 500 or status == 429:
        shown = code or f"HTTP {status}"
        # "transient", not "will be retried": whether a retry is left is the engine's to say
        msg = f"{where} failed with {shown} (HTTP {status}, transient){detail}"
        return TransientActionError(msg, operation=operation, aws_code=code or None)
    shown = code or f"HTTP {status}"
    return PermanentActionError(
        f"{where} failed with {shown}{detail}", operation=operation, aws_code=code or None
    )


def translate(exc: BaseException, service: str, operation: str) -> ActionError:
    """Map any botocore/boto3 failure to an action error; unknown exceptions become permanent."""
    if isinstance(exc, ActionError):
        return exc
    if isinstance(exc, ClientError):
        return classify_client_error(exc, service, operation)
    where = f"{service} {operation}"
    if isinstance(
        exc,
        EndpointConnectionError
        | ProxyConnectionError  # the proxy was unreachable or dropped the connection: try again
        | ConnectTimeoutError
        | ReadTimeoutError
        | ConnectionClosedError,
    ):
        return TransientActionError(f"{where}: {type(exc).__name__}: {exc}", operation=operation)
    if isinstance(exc, NoCredentialsError):
        return PermanentActionError(
            f"{where}: no AWS credentials found to assume the responder role", operation=operation
        )
    if isinstance(exc, ParamValidationError):
        return PermanentActionError(f"{where}: invalid request: {exc}", operation=operation)
    if isinstance(exc, BotoCoreError):
        return PermanentActionError(f"{where}: {type(exc).__name__}: {exc}", operation=operation)
    if isinstance(exc, ConnectionError | TimeoutError):
        return TransientActionError(f"{where}: {type(exc).__name__}: {exc}", operation=operation)
    return PermanentActionError(f"{where}: unexpected {type(exc).__name__}: {exc}", operation=operation)


@contextmanager
def aws_call(service: str, operation: str) -> Iterator[None]:
    """Run one AWS call; re-raise botocore failures as Transient/PermanentActionError.

    >>> with aws_call("iam", "UpdateAccessKey"):
    ...     iam.update_access_key(...)
    """
    try:
        yield
    except ActionError:
        raise
    except (BotoCoreError, ClientError, ConnectionError, TimeoutError) as exc:
        raise translate(exc, service, operation) from exc
