"""aws.lambda.deploy_version / shift_alias against moto over HTTP (no Docker: code is never run).

Lambda is a REST-JSON service: the fault injector matches every Lambda call (``*``).
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import Callable
from typing import Any

import pytest

from integrations.aws import lambda_
from integrations.base import ActionContext
from integrations.errors import PermanentActionError
from integrations.sandbox.faults import inject_fault
from integrations.settings import StanchSettings

ACCOUNT = "222222222222"
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)


def _zip(body: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.py", body)
    return buf.getvalue()


def _function(clients: Callable[[str], Any], name: str = "api") -> str:
    role = clients("iam").create_role(RoleName="lambda-exec", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    lam = clients("lambda")
    lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role,
        Handler="index.handler",
        Code={"ZipFile": _zip("def handler(e, c): return 'v1'\n")},
        Publish=True,
    )
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    return name


def _alias(lam: Any, name: str = "api") -> str:
    return str(lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"])


def _params(**over: Any) -> dict[str, Any]:
    fixed = base64.b64encode(_zip("def handler(e, c): return 'v2-fixed'\n")).decode()
    return {"account": ACCOUNT, "function_name": "api", "alias": "live", "zip_base64": fixed, **over}


def test_deploy_moves_alias_and_undo_shifts_back(
    clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]
) -> None:
    _function(clients)
    lam = clients("lambda")
    result = lambda_.DEPLOY.execute(make_ctx(step_id="ship"), _params())
    assert result.deployed and (result.previous_version, result.version) == ("1", "2")
    assert _alias(lam) == "2"
    v2 = lam.get_function(FunctionName="api", Qualifier="2")["Configuration"]
    assert v2["CodeSha256"] == result.code_sha256

    again = lambda_.DEPLOY.execute(make_ctx(step_id="ship"), _params())
    assert not again.deployed and (again.version, again.previous_version) == ("2", "1")
    versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName="api")["Versions"]]
    assert versions == ["$LATEST", "1", "2"]  # no third version

    spec = lambda_.DEPLOY
    assert spec.compensation == lambda_.SHIFT_ALIAS.name and spec.compensation_params is not None
    undo = spec.compensation_params(spec.validate_params(_params()), result)
    assert lambda_.SHIFT_ALIAS.execute(make_ctx(), undo).shifted and _alias(lam) == "1"
    assert not lambda_.SHIFT_ALIAS.execute(make_ctx(), undo).shifted  # already there: success


def test_missing_alias_is_permanent(clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]) -> None:
    _function(clients)
    with pytest.raises(PermanentActionError) as err:
        lambda_.DEPLOY.execute(make_ctx(), _params(alias="canary"))
    assert err.value.aws_code == "ResourceNotFoundException" and err.value.operation == "GetAlias"
    assert _alias(clients("lambda")) == "1"


def test_throttled_then_success(
    aws_settings: StanchSettings,
    clients: Callable[[str], Any],
    make_ctx: Callable[..., ActionContext],
    engine_retry: Callable[..., Any],
) -> None:
    _function(clients)
    ep = aws_settings.aws_endpoint_url or ""
    inject_fault(ep, "*", service="lambda", status=429, code="TooManyRequestsException", count=1)
    result, failures = engine_retry(lambda: lambda_.DEPLOY.execute(make_ctx(step_id="ship"), _params()))
    assert len(failures) == 1 and failures[0].aws_code == "TooManyRequestsException"
    assert result.deployed and _alias(clients("lambda")) == result.version


def test_rerun_after_crash_before_alias_update(
    clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]
) -> None:
    _function(clients)
    lam = clients("lambda")
    first = lambda_.DEPLOY.execute(make_ctx(step_id="ship"), _params())
    lam.update_alias(FunctionName="api", Name="live", FunctionVersion="1")  # as if we crashed before UpdateAlias
    again = lambda_.DEPLOY.execute(make_ctx(step_id="ship"), _params())
    assert again.deployed and (again.version, again.previous_version) == (first.version, "1")
    assert _alias(lam) == first.version


def test_access_denied_names_permission(
    aws_settings: StanchSettings, clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]
) -> None:
    _function(clients)
    inject_fault(aws_settings.aws_endpoint_url or "", "*", service="lambda", status=403, code="AccessDeniedException")
    with pytest.raises(PermanentActionError) as err:
        lambda_.DEPLOY.execute(make_ctx(), _params())
    assert "missing permission lambda:GetAlias" in str(err.value)


def test_source_is_exactly_one() -> None:
    with pytest.raises(ValueError):
        lambda_.DEPLOY.validate_params(_params(s3_bucket="b", s3_key="k"))
    with pytest.raises(ValueError):
        lambda_.DEPLOY.validate_params({"account": ACCOUNT, "function_name": "f", "alias": "a", "s3_bucket": "b"})
    assert lambda_.DEPLOY.validate_params(
        {"account": ACCOUNT, "function_name": "f", "alias": "a", "s3_bucket": "b", "s3_key": "k.zip"}
    )
