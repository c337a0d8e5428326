"""Stop a KMS key from being used: disable it, or schedule its deletion; and the undos.

Owns: ``aws.kms.disable_key`` (compensation ``aws.kms.enable_key``) and
``aws.kms.schedule_key_deletion`` (compensation ``aws.kms.cancel_key_deletion``). All four read the
key state first (``DescribeKey``) and only act when the state needs changing, so re-runs succeed.
Compensations only undo what the forward step changed: a key that was already Disabled is not
enabled by the undo; cancelling a deletion re-enables the key only if it was Enabled before.

Must not touch: ``flows``, ``prefect``. Never calls ``ScheduleKeyDeletion`` with less than 7 days.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from integrations.aws._common import SKIP_REASON_DOC, AwsParams, region_of, safe_describe, where
from integrations.aws.errors import aws_call
from integrations.aws.session import clients_for
from integrations.base import ActionContext, ActionResult, ActionSpec, PlannedOperation
from integrations.errors import PermanentActionError

__all__ = [
    "CANCEL_DELETION",
    "DISABLE",
    "ENABLE",
    "SCHEDULE_DELETION",
    "KeyParams",
    "KeyStateResult",
    "ScheduleDeletionParams",
]


class KeyParams(AwsParams):
    key_id: str = Field(min_length=1, description="Key id, key ARN or alias/<name>")


class ScheduleDeletionParams(KeyParams):
    pending_window_days: int = Field(default=30, ge=7, le=30, description="Waiting period (AWS: 7-30 days)")


class EnableKeyParams(KeyParams):
    skip_reason: str | None = Field(default=None, description=SKIP_REASON_DOC)


class CancelDeletionParams(KeyParams):
    enable: bool = Field(default=False, description="Enable the key after cancelling (it was Enabled before)")
    skip_reason: str | None = Field(default=None, description=SKIP_REASON_DOC)


class KeyStateResult(ActionResult):
    key_id: str
    key_arn: str
    previous_state: str
    state: str
    changed: bool
    deletion_date: datetime | None = None
    skipped: str | None = None


def _meta(kms: Any, key_id: str) -> dict[str, Any]:
    with aws_call("kms", "DescribeKey"):
        return dict(kms.describe_key(KeyId=key_id)["KeyMetadata"])


def _result(before: dict[str, Any], after: dict[str, Any] | None, changed: bool) -> KeyStateResult:
    now = after or before
    return KeyStateResult(
        key_id=before["KeyId"],
        key_arn=before["Arn"],
        previous_state=before["KeyState"],
        state=now["KeyState"],
        changed=changed,
        deletion_date=now.get("DeletionDate"),
    )


def _refuse(meta: dict[str, Any], wanted: str, operation: str) -> PermanentActionError:
    return PermanentActionError(
        f"KMS key {meta['KeyId']} is {meta['KeyState']}: cannot make it {wanted}", operation=operation
    )


def _disable(ctx: ActionContext, params: KeyParams) -> KeyStateResult:
    kms = clients_for(ctx, params.account, region_of(ctx, params))("kms")
    meta = _meta(kms, params.key_id)
    if meta["KeyState"] in {"Disabled", "PendingDeletion"}:
        return _result(meta, None, changed=False)
    if meta["KeyState"] != "Enabled":
        raise _refuse(meta, "Disabled", "DisableKey")
    with aws_call("kms", "DisableKey"):
        kms.disable_key(KeyId=meta["KeyId"])
    ctx.record("aws.kms.key_disabled", {"key_arn": meta["Arn"]})
    return _result(meta, _meta(kms, meta["KeyId"]), changed=True)


def _enable(ctx: ActionContext, params: EnableKeyParams) -> KeyStateResult:
    kms = clients_for(ctx, params.account, region_of(ctx, params))("kms")
    meta = _meta(kms, params.key_id)
    if params.skip_reason:
        return _result(meta, None, changed=False).model_copy(update={"skipped": params.skip_reason})
    if meta["KeyState"] == "Enabled":
        return _result(meta, None, changed=False)
    if meta["KeyState"] != "Disabled":
        raise _refuse(meta, "Enabled", "EnableKey")
    with aws_call("kms", "EnableKey"):
        kms.enable_key(KeyId=meta["KeyId"])
    ctx.record("aws.kms.key_enabled", {"key_arn": meta["Arn"]})
    return _result(meta, _meta(kms, meta["KeyId"]), changed=True)


def _schedule(ctx: ActionContext, params: ScheduleDeletionParams) -> KeyStateResult:
    kms = clients_for(ctx, params.account, region_of(ctx, params))("kms")
    meta = _meta(kms, params.key_id)
    if meta["KeyState"] == "PendingDeletion":
        return _result(meta, None, changed=False)
    if meta["KeyState"] not in {"Enabled", "Disabled"}:
        raise _refuse(meta, "PendingDeletion", "ScheduleKeyDeletion")
    with aws_call("kms", "ScheduleKeyDeletion"):
        kms.schedule_key_deletion(KeyId=meta["KeyId"], PendingWindowInDays=params.pending_window_days)
    after = _meta(kms, meta["KeyId"])
    ctx.record(
        "aws.kms.key_deletion_scheduled",
        {"key_arn": meta["Arn"], "deletion_date": str(after.get("DeletionDate") or "")},
    )
    return _result(meta, after, changed=True)


def _cancel(ctx: ActionContext, params: CancelDeletionParams) -> KeyStateResult:
    kms = clients_for(ctx, params.account, region_of(ctx, params))("kms")
    meta = _meta(kms, params.key_id)
    if params.skip_reason:
        return _result(meta, None, changed=False).model_copy(update={"skipped": params.skip_reason})
    changed = False
    if meta["KeyState"] == "PendingDeletion":
        with aws_call("kms", "CancelKeyDeletion"):
            kms.cancel_key_deletion(KeyId=meta["KeyId"])
        changed = True
        ctx.record("aws.kms.key_deletion_cancelled", {"key_arn": meta["Arn"]})
    after = _meta(kms, meta["KeyId"])
    if params.enable and after["KeyState"] == "Disabled":
        with aws_call("kms", "EnableKey"):
            kms.enable_key(KeyId=meta["KeyId"])
        changed = True
        ctx.record("aws.kms.key_enabled", {"key_arn": meta["Arn"]})
        after = _meta(kms, meta["KeyId"])
    return _result(meta, after, changed=changed)


def _op(operation: str, note: str) -> Any:
    def plan(ctx: ActionContext, params: KeyParams) -> list[PlannedOperation]:
        return [
            PlannedOperation(
                service="kms",
                operation=operation,
                account=params.account,
                region=params.region,
                resources=[params.key_id],
                note=note.format(days=getattr(params, "pending_window_days", "")),
            )
        ]

    return plan


def _stateful(operation: str, note: str, noop_states: set[str]) -> Any:
    blind = _op(operation, note)

    def describe(ctx: ActionContext, params: KeyParams) -> list[PlannedOperation]:
        if getattr(params, "skip_reason", None):
            return []
        meta = _meta(clients_for(ctx, params.account, region_of(ctx, params))("kms"), params.key_id)
        ops: list[PlannedOperation] = blind(ctx, params)
        ops[0].resources = [meta["Arn"]]
        state = meta["KeyState"]
        ops[0].note = f"nothing to do: key is {state}" if state in noop_states else f"{ops[0].note} (now {state})"
        return ops

    return safe_describe(describe, blind)


def _undo_disable(params: KeyParams, result: KeyStateResult) -> dict[str, Any]:
    out: dict[str, Any] = {**where(params), "key_id": result.key_arn}
    if not result.changed:
        out["skip_reason"] = f"the key was already {result.previous_state} before this step"
    return out


def _undo_schedule(params: ScheduleDeletionParams, result: KeyStateResult) -> dict[str, Any]:
    out: dict[str, Any] = {**where(params), "key_id": result.key_arn, "enable": result.previous_state == "Enabled"}
    if not result.changed:
        out["skip_reason"] = "the key was already pending deletion before this step"
    return out


DISABLE: ActionSpec[KeyParams, KeyStateResult] = ActionSpec(
    name="aws.kms.disable_key",
    summary="Disable a KMS key (nothing can encrypt or decrypt with it until it is enabled again).",
    params=KeyParams,
    result=KeyStateResult,
    run=_disable,
    mutating=True,
    idempotent=True,
    describe=_stateful("DisableKey", "Enabled -> Disabled", {"Disabled", "PendingDeletion"}),
    compensation="aws.kms.enable_key",
    compensation_params=_undo_disable,
)

ENABLE: ActionSpec[EnableKeyParams, KeyStateResult] = ActionSpec(
    name="aws.kms.enable_key",
    summary="Enable a disabled KMS key (undo of disable_key).",
    params=EnableKeyParams,
    result=KeyStateResult,
    run=_enable,
    mutating=True,
    idempotent=True,
    describe=_stateful("EnableKey", "Disabled -> Enabled", {"Enabled"}),
)

SCHEDULE_DELETION: ActionSpec[ScheduleDeletionParams, KeyStateResult] = ActionSpec(
    name="aws.kms.schedule_key_deletion",
    summary="Schedule a KMS key for deletion after a 7-30 day waiting period (cancellable until then).",
    params=ScheduleDeletionParams,
    result=KeyStateResult,
    run=_schedule,
    mutating=True,
    idempotent=True,
    describe=_stateful("ScheduleKeyDeletion", "deleted after {days} days", {"PendingDeletion"}),
    compensation="aws.kms.cancel_key_deletion",
    compensation_params=_undo_schedule,
)

CANCEL_DELETION: ActionSpec[CancelDeletionParams, KeyStateResult] = ActionSpec(
    name="aws.kms.cancel_key_deletion",
    summary="Cancel a KMS key's scheduled deletion (and enable it if asked): undo of schedule_key_deletion.",
    params=CancelDeletionParams,
    result=KeyStateResult,
    run=_cancel,
    mutating=True,
    idempotent=True,
    describe=_stateful("CancelKeyDeletion", "PendingDeletion -> Disabled", {"Enabled"}),
)
