"""IAM credential clean-up after containment: delete access keys, remove console passwords.

Owns: ``aws.iam.delete_access_keys`` (a separate, normally approval-gated step after
``deactivate_access_keys``: only Inactive keys are deleted unless ``force``) and
``aws.iam.remove_login_profile`` (console password). Both are check-then-act: a key that is already
gone, or a user without a login profile, is a success. Neither has a compensation — a deleted key
or password cannot be brought back; issuing new credentials is a different, deliberate step.

Must not touch: ``flows``, ``prefect``. Only access key *ids* are returned or recorded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from integrations.aws._common import AwsParams, is_code, region_of, safe_describe
from integrations.aws.errors import aws_call
from integrations.aws.iam import list_key_statuses
from integrations.aws.session import clients_for
from integrations.base import ActionContext, ActionResult, ActionSpec, PlannedOperation
from integrations.errors import PermanentActionError

__all__ = [
    "DELETE_KEYS",
    "REMOVE_LOGIN_PROFILE",
    "DeleteKeysParams",
    "DeleteKeysResult",
    "RemoveLoginProfileParams",
    "RemoveLoginProfileResult",
]


class DeleteKeysParams(AwsParams):
    user: str = Field(min_length=1)
    key_ids: list[str] | None = Field(
        default=None, description="Keys to delete; None = every key of the user (Inactive ones unless force)"
    )
    force: bool = Field(default=False, description="Also delete keys that are still Active")


class DeleteKeysResult(ActionResult):
    account: str
    user: str
    deleted: list[str] = Field(description="Key ids this run deleted")
    already_deleted: list[str] = Field(description="Requested key ids the user no longer has")
    skipped_active: list[str] = Field(description="Active keys left alone (force was false)")


class RemoveLoginProfileParams(AwsParams):
    user: str = Field(min_length=1)


class RemoveLoginProfileResult(ActionResult):
    account: str
    user: str
    removed: bool = Field(description="False when the user had no console password")
    password_created: datetime | None = Field(default=None, description="When the removed password was set")


def _targets(params: DeleteKeysParams, statuses: dict[str, str]) -> tuple[list[str], list[str], list[str]]:
    """(to delete, already gone, Active and left alone)."""
    wanted = list(dict.fromkeys(params.key_ids)) if params.key_ids is not None else sorted(statuses)
    gone = [k for k in wanted if k not in statuses]
    present = [k for k in wanted if k in statuses]
    active = [k for k in present if statuses[k] == "Active" and not params.force]
    return [k for k in present if k not in active], gone, active


def _delete_keys(ctx: ActionContext, params: DeleteKeysParams) -> DeleteKeysResult:
    iam = clients_for(ctx, params.account, region_of(ctx, params))("iam")
    delete, gone, active = _targets(params, list_key_statuses(iam, params.user))
    deleted: list[str] = []
    for key_id in delete:
        try:
            with aws_call("iam", "DeleteAccessKey"):
                iam.delete_access_key(UserName=params.user, AccessKeyId=key_id)
        except PermanentActionError as exc:
            if not is_code(exc, "NoSuchEntity"):
                raise
            gone.append(key_id)  # deleted concurrently (or by our own earlier, interrupted attempt)
            continue
        deleted.append(key_id)
        ctx.record(
            "aws.iam.access_key_deleted",
            {"account": params.account, "user": params.user, "access_key_id": key_id},
        )
    if active:
        ctx.logger.warning("left %d Active key(s) of %s: %s (force=false)", len(active), params.user, active)
    return DeleteKeysResult(
        account=params.account, user=params.user, deleted=deleted, already_deleted=gone, skipped_active=active
    )


def _describe_delete(ctx: ActionContext, params: DeleteKeysParams) -> list[PlannedOperation]:
    iam = clients_for(ctx, params.account, region_of(ctx, params))("iam")
    delete, gone, active = _targets(params, list_key_statuses(iam, params.user))
    notes = [f"{len(delete)} key(s), irreversible"]
    if active:
        notes.append(f"Active, left alone (force=false): {', '.join(active)}")
    if gone:
        notes.append(f"already gone: {', '.join(gone)}")
    return [
        PlannedOperation(
            service="iam",
            operation="DeleteAccessKey",
            account=params.account,
            resources=[f"user/{params.user}/{k}" for k in delete],
            note="; ".join(notes),
        )
    ]


def _describe_delete_blind(ctx: ActionContext, params: DeleteKeysParams) -> list[PlannedOperation]:
    which = ", ".join(params.key_ids) if params.key_ids is not None else "every key"
    state = "any state" if params.force else "Inactive only"
    return [
        PlannedOperation(
            service="iam",
            operation="DeleteAccessKey",
            account=params.account,
            resources=[f"user/{params.user}"],
            note=f"{which} ({state}), irreversible",
        )
    ]


def _login_profile_created(iam: Any, user: str) -> tuple[bool, datetime | None]:
    try:
        with aws_call("iam", "GetLoginProfile"):
            profile = iam.get_login_profile(UserName=user)["LoginProfile"]
    except PermanentActionError as exc:
        if is_code(exc, "NoSuchEntity") and "login profile" in str(exc).lower():
            return False, None
        raise
    created = profile.get("CreateDate")
    return True, created if isinstance(created, datetime) else None


def _remove_login_profile(ctx: ActionContext, params: RemoveLoginProfileParams) -> RemoveLoginProfileResult:
    iam = clients_for(ctx, params.account, region_of(ctx, params))("iam")
    exists, created = _login_profile_created(iam, params.user)
    if not exists:
        return RemoveLoginProfileResult(account=params.account, user=params.user, removed=False)
    try:
        with aws_call("iam", "DeleteLoginProfile"):
            iam.delete_login_profile(UserName=params.user)
    except PermanentActionError as exc:
        if not is_code(exc, "NoSuchEntity"):
            raise
        return RemoveLoginProfileResult(account=params.account, user=params.user, removed=False)
    ctx.record("aws.iam.login_profile_removed", {"account": params.account, "user": params.user})
    return RemoveLoginProfileResult(account=params.account, user=params.user, removed=True, password_created=created)


def _describe_login(ctx: ActionContext, params: RemoveLoginProfileParams) -> list[PlannedOperation]:
    iam = clients_for(ctx, params.account, region_of(ctx, params))("iam")
    exists, _ = _login_profile_created(iam, params.user)
    return [
        PlannedOperation(
            service="iam",
            operation="DeleteLoginProfile",
            account=params.account,
            resources=[f"user/{params.user}"] if exists else [],
            note="console password removed, irreversible" if exists else "nothing to do: no console password",
        )
    ]


def _describe_login_blind(ctx: ActionContext, params: RemoveLoginProfileParams) -> list[PlannedOperation]:
    return [
        PlannedOperation(
            service="iam",
            operation="DeleteLoginProfile",
            account=params.account,
            resources=[f"user/{params.user}"],
            note="console password removed if there is one, irreversible",
        )
    ]


DELETE_KEYS: ActionSpec[DeleteKeysParams, DeleteKeysResult] = ActionSpec(
    name="aws.iam.delete_access_keys",
    summary="Delete an IAM user's (Inactive, unless force) access keys. Irreversible: gate it on approval.",
    params=DeleteKeysParams,
    result=DeleteKeysResult,
    run=_delete_keys,
    mutating=True,
    idempotent=True,
    describe=safe_describe(_describe_delete, _describe_delete_blind),
)

REMOVE_LOGIN_PROFILE: ActionSpec[RemoveLoginProfileParams, RemoveLoginProfileResult] = ActionSpec(
    name="aws.iam.remove_login_profile",
    summary="Remove an IAM user's console password (login profile); a user without one is a success.",
    params=RemoveLoginProfileParams,
    result=RemoveLoginProfileResult,
    run=_remove_login_profile,
    mutating=True,
    idempotent=True,
    describe=safe_describe(_describe_login, _describe_login_blind),
)
