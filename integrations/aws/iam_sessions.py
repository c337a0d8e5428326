"""Revoke the temporary credentials already issued for an IAM role (or user), and the undo.

Owns: ``aws.iam.revoke_sessions`` and its compensation ``aws.iam.remove_session_revocation``.
This is the documented AWS pattern (what the console's "Revoke active sessions" does): an inline
policy named ``AWSRevokeOlderSessions`` that denies everything to credentials whose
``aws:TokenIssueTime`` is before a cut-off (``DateLessThan``). Sessions issued after the cut-off —
including the responders' own fresh ones — keep working. Deleting the role or user is never done.

Idempotency: the policy statement's ``Sid`` carries this step's token, so a re-run finds its own
policy and keeps the original cut-off (moving it later would also revoke legitimate sessions issued
since). A revocation made earlier by someone else is replaced (the newer cut-off revokes strictly
more) and remembered, so the compensation restores it rather than deleting it.

Must not touch: ``flows``, ``prefect``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from pydantic import Field, model_validator

from integrations.aws._common import SKIP_REASON_DOC, AwsParams, is_code, region_of, safe_describe, token_uuid, where
from integrations.aws.errors import aws_call
from integrations.aws.session import clients_for
from integrations.base import ActionContext, ActionResult, ActionSpec, PlannedOperation
from integrations.errors import PermanentActionError

__all__ = [
    "POLICY_NAME",
    "REMOVE_REVOCATION",
    "REVOKE",
    "RemoveRevocationParams",
    "RemoveRevocationResult",
    "RevokeSessionsParams",
    "RevokeSessionsResult",
    "revocation_policy",
]

POLICY_NAME = "AWSRevokeOlderSessions"


class _Principal(AwsParams):
    role_name: str | None = Field(default=None, min_length=1)
    user: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> _Principal:
        if (self.role_name is None) == (self.user is None):
            raise ValueError("give exactly one of role_name or user")
        return self

    @property
    def principal(self) -> str:
        return f"role/{self.role_name}" if self.role_name else f"user/{self.user}"


class RevokeSessionsParams(_Principal):
    pass


class RevokeSessionsResult(ActionResult):
    account: str
    principal: str = Field(description="role/<name> or user/<name>")
    policy_name: str
    cutoff: datetime = Field(description="Credentials issued before this instant are denied")
    previous_cutoff: datetime | None = Field(description="Cut-off of a revocation that was already there")
    revoked: bool = Field(description="True when this run wrote the policy (False on a re-run)")
    ours: bool = Field(description="The policy in place is this step's (False: a newer one was already there)")


class RemoveRevocationParams(_Principal):
    expected_cutoff: datetime | None = Field(
        default=None, description="Only act if the policy still has this cut-off (ours)"
    )
    restore_cutoff: datetime | None = Field(
        default=None, description="Put this earlier revocation back instead of deleting the policy"
    )
    skip_reason: str | None = Field(default=None, description=SKIP_REASON_DOC)


class RemoveRevocationResult(ActionResult):
    account: str
    principal: str
    removed: bool
    restored_cutoff: datetime | None = None
    skipped: str | None = None


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sid(token: str) -> str:
    return "StanchRevoke" + token.replace("-", "")


def revocation_policy(cutoff: datetime, sid: str = "RevokeOlderSessions") -> dict[str, Any]:
    """The AWS-documented deny-all for sessions issued before ``cutoff``."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": sid,
                "Effect": "Deny",
                "Action": ["*"],
                "Resource": ["*"],
                "Condition": {"DateLessThan": {"aws:TokenIssueTime": _iso(cutoff)}},
            }
        ],
    }


def _read(iam: Any, params: _Principal) -> tuple[datetime, str] | None:
    """(cut-off, statement Sid) of the current revocation policy, or None."""
    try:
        if params.role_name:
            with aws_call("iam", "GetRolePolicy"):
                doc = iam.get_role_policy(RoleName=params.role_name, PolicyName=POLICY_NAME)["PolicyDocument"]
        else:
            with aws_call("iam", "GetUserPolicy"):
                doc = iam.get_user_policy(UserName=params.user, PolicyName=POLICY_NAME)["PolicyDocument"]
    except PermanentActionError as exc:
        if is_code(exc, "NoSuchEntity"):  # no such policy (or principal: callers check that first)
            return None
        raise
    if isinstance(doc, str):  # boto3 decodes it; moto/raw responses may be URL-encoded JSON
        doc = json.loads(unquote(doc))
    stmt = doc["Statement"][0] if isinstance(doc["Statement"], list) else doc["Statement"]
    raw = stmt["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
    return datetime.fromisoformat(str(raw).replace("Z", "+00:00")), str(stmt.get("Sid", ""))


def _put(iam: Any, params: _Principal, cutoff: datetime, sid: str) -> None:
    doc = json.dumps(revocation_policy(cutoff, sid))
    if params.role_name:
        with aws_call("iam", "PutRolePolicy"):
            iam.put_role_policy(RoleName=params.role_name, PolicyName=POLICY_NAME, PolicyDocument=doc)
    else:
        with aws_call("iam", "PutUserPolicy"):
            iam.put_user_policy(UserName=params.user, PolicyName=POLICY_NAME, PolicyDocument=doc)


def _delete(iam: Any, params: _Principal) -> None:
    try:
        if params.role_name:
            with aws_call("iam", "DeleteRolePolicy"):
                iam.delete_role_policy(RoleName=params.role_name, PolicyName=POLICY_NAME)
        else:
            with aws_call("iam", "DeleteUserPolicy"):
                iam.delete_user_policy(UserName=params.user, PolicyName=POLICY_NAME)
    except PermanentActionError as exc:
        if not is_code(exc, "NoSuchEntity"):
            raise


def _ensure_principal(iam: Any, params: _Principal) -> None:
    """Fail permanently (NoSuchEntity) when the role/user does not exist."""
    if params.role_name:
        with aws_call("iam", "GetRole"):
            iam.get_role(RoleName=params.role_name)
    else:
        with aws_call("iam", "GetUser"):
            iam.get_user(UserName=params.user)


def _revoke(ctx: ActionContext, params: RevokeSessionsParams) -> RevokeSessionsResult:
    iam = clients_for(ctx, params.account, region_of(ctx, params))("iam")
    sid = _sid(token_uuid(ctx, "revoke-sessions"))
    _ensure_principal(iam, params)
    current = _read(iam, params)
    base = {"account": params.account, "principal": params.principal, "policy_name": POLICY_NAME}
    if current is not None and current[1] == sid:
        # Our own revocation: keep its cut-off. The previous one is not recoverable from AWS any
        # more; the first run's result (in the timeline) carries it for the compensation.
        return RevokeSessionsResult(**base, cutoff=current[0], previous_cutoff=None, revoked=False, ours=True)
    cutoff = datetime.now(UTC).replace(microsecond=0)
    previous = current[0] if current else None
    if previous is not None and previous >= cutoff:
        return RevokeSessionsResult(**base, cutoff=previous, previous_cutoff=previous, revoked=False, ours=False)
    _put(iam, params, cutoff, sid)
    ctx.record(
        "aws.iam.sessions_revoked",
        {"account": params.account, "principal": params.principal, "cutoff": _iso(cutoff)},
    )
    return RevokeSessionsResult(**base, cutoff=cutoff, previous_cutoff=previous, revoked=True, ours=True)


def _plan(params: _Principal, operation: str, note: str) -> list[PlannedOperation]:
    return [
        PlannedOperation(
            service="iam",
            operation=operation,
            account=params.account,
            resources=[f"{params.principal}/policy/{POLICY_NAME}"],
            note=note,
        )
    ]


def _put_op(params: _Principal) -> str:
    return "PutRolePolicy" if params.role_name else "PutUserPolicy"


def _describe(ctx: ActionContext, params: RevokeSessionsParams) -> list[PlannedOperation]:
    iam = clients_for(ctx, params.account, region_of(ctx, params))("iam")
    current = _read(iam, params)
    note = "deny all to credentials issued before now (aws:TokenIssueTime)"
    if current is not None:
        note += f"; replaces the revocation with cut-off {_iso(current[0])}"
    return _plan(params, _put_op(params), note)


def _describe_blind(ctx: ActionContext, params: RevokeSessionsParams) -> list[PlannedOperation]:
    return _plan(params, _put_op(params), "deny all to credentials issued before now (aws:TokenIssueTime)")


def _remove(ctx: ActionContext, params: RemoveRevocationParams) -> RemoveRevocationResult:
    base = {"account": params.account, "principal": params.principal}
    if params.skip_reason:
        return RemoveRevocationResult(**base, removed=False, skipped=params.skip_reason)
    iam = clients_for(ctx, params.account, region_of(ctx, params))("iam")
    current = _read(iam, params)
    if current is None:
        return RemoveRevocationResult(**base, removed=False, skipped="no revocation policy")
    if params.expected_cutoff is not None and current[0] != params.expected_cutoff:
        return RemoveRevocationResult(
            **base,
            removed=False,
            skipped=f"cut-off is {_iso(current[0])}, not ours ({_iso(params.expected_cutoff)}): left in place",
        )
    if params.restore_cutoff is not None:
        _put(iam, params, params.restore_cutoff, "RevokeOlderSessions")
        ctx.record(
            "aws.iam.session_revocation_restored",
            {**base, "cutoff": _iso(params.restore_cutoff)},
        )
        return RemoveRevocationResult(**base, removed=False, restored_cutoff=params.restore_cutoff)
    _delete(iam, params)
    ctx.record("aws.iam.session_revocation_removed", base)
    return RemoveRevocationResult(**base, removed=True)


def _describe_remove(ctx: ActionContext, params: RemoveRevocationParams) -> list[PlannedOperation]:
    if params.skip_reason:
        return []
    if params.restore_cutoff is not None:
        return _plan(params, _put_op(params), f"restore the earlier cut-off {_iso(params.restore_cutoff)}")
    op = "DeleteRolePolicy" if params.role_name else "DeleteUserPolicy"
    return _plan(params, op, "sessions issued before the cut-off work again")


def _compensation_params(params: RevokeSessionsParams, result: RevokeSessionsResult) -> dict[str, Any]:
    out: dict[str, Any] = {**where(params), "expected_cutoff": result.cutoff.isoformat()}
    out["role_name" if params.role_name else "user"] = params.role_name or params.user
    if result.previous_cutoff is not None:
        out["restore_cutoff"] = result.previous_cutoff.isoformat()
    if not result.ours:
        out["skip_reason"] = "an equal or newer revocation was already in place before this step"
    return out


REVOKE: ActionSpec[RevokeSessionsParams, RevokeSessionsResult] = ActionSpec(
    name="aws.iam.revoke_sessions",
    summary="Deny every session of a role/user issued before now (inline AWSRevokeOlderSessions policy).",
    params=RevokeSessionsParams,
    result=RevokeSessionsResult,
    run=_revoke,
    mutating=True,
    idempotent=True,
    describe=safe_describe(_describe, _describe_blind),
    compensation="aws.iam.remove_session_revocation",
    compensation_params=_compensation_params,
)

REMOVE_REVOCATION: ActionSpec[RemoveRevocationParams, RemoveRevocationResult] = ActionSpec(
    name="aws.iam.remove_session_revocation",
    summary="Remove (or restore the earlier) AWSRevokeOlderSessions policy; undo of revoke_sessions.",
    params=RemoveRevocationParams,
    result=RemoveRevocationResult,
    run=_remove,
    mutating=True,
    idempotent=True,
    describe=_describe_remove,
)
