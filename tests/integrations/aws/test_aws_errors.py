"""botocore failure -> Transient/PermanentActionError mapping (no server needed)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ProxyConnectionError, ReadTimeoutError

from integrations.aws.errors import aws_call, iam_permission
from integrations.errors import PermanentActionError, TransientActionError


def _client_error(code: str, status: int, op: str = "UpdateAccessKey") -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "msg"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, op)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("Throttling", 400),
        ("ThrottlingException", 400),
        ("RequestLimitExceeded", 503),
        ("ServiceUnavailable", 503),
        ("InternalFailure", 500),
        ("SlowDown", 503),
        ("", 502),
        ("TooManyRequestsException", 429),
    ],
)
def test_transient(code: str, status: int) -> None:
    with pytest.raises(TransientActionError) as err, aws_call("iam", "UpdateAccessKey"):
        raise _client_error(code, status)
    assert err.value.operation == "UpdateAccessKey"
    assert "iam UpdateAccessKey" in str(err.value)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("AccessDenied", 403),
        ("AccessDeniedException", 400),
        ("UnauthorizedOperation", 403),
        ("ValidationError", 400),
        ("NoSuchEntity", 404),
        ("InvalidParameterValue", 400),
        ("LimitExceeded", 409),
        ("ResourceNotFoundException", 400),
    ],
)
def test_permanent(code: str, status: int) -> None:
    with pytest.raises(PermanentActionError) as err, aws_call("iam", "UpdateAccessKey"):
        raise _client_error(code, status)
    assert err.value.aws_code == code
    assert code in str(err.value)


def test_access_denied_names_missing_permission() -> None:
    with pytest.raises(PermanentActionError) as err, aws_call("iam", "UpdateAccessKey"):
        raise _client_error("AccessDenied", 403)
    assert "missing permission iam:UpdateAccessKey" in str(err.value)
    assert iam_permission("s3", "HeadObject") == "s3:GetObject"


def test_connection_errors_are_transient() -> None:
    with pytest.raises(TransientActionError), aws_call("sts", "AssumeRole"):
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
    with pytest.raises(TransientActionError), aws_call("s3", "PutObject"):
        raise ReadTimeoutError(endpoint_url="http://127.0.0.1:9")


def test_proxy_connection_error_is_transient() -> None:
    # a proxy that is down or drops the connection is a network blip, not a wrong request
    with pytest.raises(TransientActionError) as err, aws_call("iam", "UpdateAccessKey"):
        raise ProxyConnectionError(proxy_url="http://proxy.internal:3128", error="connection refused")
    assert "ProxyConnectionError" in str(err.value)


def test_transient_message_does_not_promise_a_retry() -> None:
    # whether a retry is left is the engine's to say ("gave up after N attempts" when none is)
    with pytest.raises(TransientActionError) as err, aws_call("s3", "PutObject"):
        raise _client_error("SlowDown", 503)
    assert "will be retried" not in str(err.value) and "transient" in str(err.value)


def test_other_exceptions_pass_through() -> None:
    with pytest.raises(KeyError), aws_call("iam", "ListAccessKeys"):
        raise KeyError("not an AWS failure")
