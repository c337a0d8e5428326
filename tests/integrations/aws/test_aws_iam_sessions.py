"""aws.iam.revoke_sessions / remove_session_revocation against moto over HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from integrations.aws import iam_sessions
from integrations.base import ActionContext
from integrations.errors import PermanentActionError
from integrations.sandbox.faults import inject_fault
from integrations.settings import StanchSettings

ACCOUNT = "222222222222"
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
)


def _role(iam: Any, name: str = "deploy-role") -> None:
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST)


def _policy(iam: Any, role: str = "deploy-role") -> dict[str, Any]:
    doc = iam.get_role_policy(RoleName=role, PolicyName="AWSRevokeOlderSessions")["PolicyDocument"]
    return doc if isinstance(doc, dict) else json.loads(doc)


def test_revoke_role_sessions_and_undo(clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]) -> None:
    iam = clients("iam")
    _role(iam)
    params = {"account": ACCOUNT, "role_name": "deploy-role"}
    before = datetime.now(UTC).replace(microsecond=0)
    result = iam_sessions.REVOKE.execute(make_ctx(), params)
    assert result.revoked and result.ours and result.previous_cutoff is None
    assert before <= result.cutoff <= datetime.now(UTC)
    stmt = _policy(iam)["Statement"][0]
    assert stmt["Effect"] == "Deny" and stmt["Action"] == ["*"] and stmt["Resource"] == ["*"]
    assert stmt["Condition"] == {"DateLessThan": {"aws:TokenIssueTime": result.cutoff.strftime("%Y-%m-%dT%H:%M:%SZ")}}

    again = iam_sessions.REVOKE.execute(make_ctx(), params)  # re-run: same step keeps its cut-off
    assert not again.revoked and again.ours and again.cutoff == result.cutoff

    spec = iam_sessions.REVOKE
    assert spec.compensation == iam_sessions.REMOVE_REVOCATION.name and spec.compensation_params is not None
    undo = spec.compensation_params(spec.validate_params(params), result)
    assert iam_sessions.REMOVE_REVOCATION.execute(make_ctx(), undo).removed
    assert iam.list_role_policies(RoleName="deploy-role")["PolicyNames"] == []
    assert iam_sessions.REMOVE_REVOCATION.execute(make_ctx(), undo).skipped == "no revocation policy"


def test_earlier_revocation_is_restored_by_undo(
    clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]
) -> None:
    iam = clients("iam")
    iam.create_user(UserName="ci-app")
    earlier = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    iam.put_user_policy(
        UserName="ci-app",
        PolicyName="AWSRevokeOlderSessions",
        PolicyDocument=json.dumps(iam_sessions.revocation_policy(earlier)),
    )
    params = {"account": ACCOUNT, "user": "ci-app"}
    result = iam_sessions.REVOKE.execute(make_ctx(), params)
    assert result.revoked and result.previous_cutoff == earlier and result.cutoff > earlier
    assert iam_sessions.REVOKE.compensation_params is not None
    undo = iam_sessions.REVOKE.compensation_params(iam_sessions.REVOKE.validate_params(params), result)
    back = iam_sessions.REMOVE_REVOCATION.execute(make_ctx(), undo)
    assert back.restored_cutoff == earlier and not back.removed
    doc = iam.get_user_policy(UserName="ci-app", PolicyName="AWSRevokeOlderSessions")["PolicyDocument"]
    doc = doc if isinstance(doc, dict) else json.loads(doc)
    assert doc["Statement"][0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"] == earlier.strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def test_missing_role_is_permanent(aws_settings: StanchSettings, make_ctx: Callable[..., ActionContext]) -> None:
    with pytest.raises(PermanentActionError) as err:
        iam_sessions.REVOKE.execute(make_ctx(), {"account": ACCOUNT, "role_name": "nope"})
    assert err.value.aws_code == "NoSuchEntity" and err.value.operation == "GetRole"


def test_access_denied_names_permission(
    aws_settings: StanchSettings, clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]
) -> None:
    _role(clients("iam"))
    inject_fault(aws_settings.aws_endpoint_url or "", "PutRolePolicy", status=403, code="AccessDenied")
    with pytest.raises(PermanentActionError) as err:
        iam_sessions.REVOKE.execute(make_ctx(), {"account": ACCOUNT, "role_name": "deploy-role"})
    assert "missing permission iam:PutRolePolicy" in str(err.value)


def test_throttled_then_success(
    aws_settings: StanchSettings,
    clients: Callable[[str], Any],
    make_ctx: Callable[..., ActionContext],
    engine_retry: Callable[..., Any],
) -> None:
    iam = clients("iam")
    _role(iam)
    inject_fault(aws_settings.aws_endpoint_url or "", "PutRolePolicy", code="Throttling", count=1)
    params = {"account": ACCOUNT, "role_name": "deploy-role"}
    result, failures = engine_retry(lambda: iam_sessions.REVOKE.execute(make_ctx(), params))
    assert len(failures) == 1 and result.revoked
    assert _policy(iam)["Statement"][0]["Effect"] == "Deny"


def test_exactly_one_principal() -> None:
    with pytest.raises(ValueError):
        iam_sessions.REVOKE.validate_params({"account": ACCOUNT})
    with pytest.raises(ValueError):
        iam_sessions.REVOKE.validate_params({"account": ACCOUNT, "role_name": "r", "user": "u"})
