"""IAM containment actions: deactivate a (CI) user's access keys, and the compensation.

Owns: ``aws.iam.deactivate_access_keys`` and ``aws.iam.reactivate_access_keys``. Both are
check-then-act: a key already in the wanted state is reported, not touched, so re-running a step
is a success. Only access key *ids* are ever returned or recorded — never secrets.

Exactly once against the world: ``deactivate`` records the user's key statuses (a before-image,
``ctx.observe``) before switching anything off. Re-run after a crash, a key that is Inactive now
but was Active in that before-image was deactivated by this incident: it is reported in
``deactivated`` (so the compensation reactivates it) and its event is recorded once, never as
``already_inactive``.

Must not touch: ``flows``, ``prefect``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from integrations.aws._common import AwsParams, region_of, safe_describe
from integrations.aws.errors import aws_call
from integrations.aws.session import clients_for
from integrations.base import ActionContext, ActionResult, ActionSpec, PlannedOperation

__all__ = [
    "DEACTIVATE",
    "REACTIVATE",
    "DeactivateKeysParams",
    "DeactivateKeysResult",
    "ReactivateKeysParams",
    "ReactivateKeysResult",
    "list_key_statuses",
]


class DeactivateKeysParams(AwsParams):
    user: str = Field(min_length=1, description="IAM user name, e.g. the CI user of a service")


class DeactivateKeysResult(ActionResult):
    account: str
    user: str
    deactivated: list[str] = Field(description="Key ids this run switched to Inactive")
    already_inactive: list[str] = Field(description="Key ids that were already Inactive")


class ReactivateKeysParams(AwsParams):
    user: str = Field(min_length=1)
    key_ids: list[str] = Field(description="Exactly the keys to switch back to Active")


class ReactivateKeysResult(ActionResult):
    account: str
    user: str
    reactivated: list[str]
    already_active: list[str]
    missing: list[str] = Field(description="Requested key ids the user no longer has (deleted since)")


def list_key_statuses(iam: Any, user: str) -> dict[str, str]:
    """``{access_key_id: "Active"|"Inactive"}`` for one user (all pages)."""
    statuses: dict[str, str] = {}
    marker: str | None = None
    while True:
        kwargs: dict[str, Any] = {"UserName": user}
        if marker:
            kwargs["Marker"] = marker
        with aws_call("iam", "ListAccessKeys"):
            page = iam.list_access_keys(**kwargs)
        for meta in page.get("AccessKeyMetadata", []):
            statuses[meta["AccessKeyId"]] = meta["Status"]
        if not page.get("IsTruncated"):
            return statuses
        marker = page.get("Marker")


def _set_status(iam: Any, user: str, key_id: str, status: str) -> None:
    with aws_call("iam", "UpdateAccessKey"):
        iam.update_access_key(UserName=user, AccessKeyId=key_id, Status=status)


def _deactivate(ctx: ActionContext, params: DeactivateKeysParams) -> DeactivateKeysResult:
    iam = clients_for(ctx, params.account, region_of(ctx, params))("iam")
    statuses = list_key_statuses(iam, params.user)
    # Before-image, recorded before any change: a key Inactive now but Active in it was switched
    # off by this incident (an earlier attempt that crashed before recording it), not before.
    before = ctx.observe(f"iam:{params.account}:user/{params.user}", {"statuses": statuses})
    was = before.get("statuses") or {}
    deactivated: list[str] = []
    already: list[str] = []
    for key_id, status in sorted(statuses.items()):
        if status == "Inactive":
            if was.get(key_id) == "Active":  # ours: reconcile the record and the compensation
                deactivated.append(key_id)
                ctx.record_once(
                    "aws.iam.access_key_deactivated",
                    {"account": params.account, "user": params.user, "access_key_id": key_id,
                     "reconciled": True},
                    match=("access_key_id",),
                )
            else:
                already.append(key_id)
            continue
        _set_status(iam, params.user, key_id, "Inactive")
        deactivated.append(key_id)
        ctx.record(
            "aws.iam.access_key_deactivated",
            {"account": params.account, "user": params.user, "access_key_id": key_id},
        )
    return DeactivateKeysResult(
        account=params.account, user=params.user, deactivated=deactivated, already_inactive=already
    )


def _describe_deactivate(ctx: ActionContext, params: DeactivateKeysParams) -> list[PlannedOperation]:
    iam = clients_for(ctx, params.account, region_of(ctx, params))("iam")
    statuses = list_key_statuses(iam, params.user)
    active = sorted(k for k, s in statuses.items() if s != "Inactive")
    inactive = sorted(k for k, s in statuses.items() if s == "Inactive")
    note = f"{len(active)} Active -> Inactive"
    if inactive:
        note += f"; already Inactive: {', '.join(inactive)}"
    if not active:
        note = "nothing to do: no Active keys" + (f" (Inactive: {', '.join(inactive)})" if inactive else "")
    return [
        PlannedOperation(
            service="iam",
            operation="UpdateAccessKey",
            account=params.account,
            resources=[f"user/{params.user}/{k}" for k in active],
            note=note,
        )
    ]


def _plan_deactivate_blind(ctx: ActionContext, params: DeactivateKeysParams) -> list[PlannedOperation]:
    return [
        PlannedOperation(
            service="iam",
            operation="UpdateAccessKey",
            account=params.account,
            resources=[f"user/{params.user}"],
            note="every Active key -> Inactive",
        )
    ]


def _reactivate(ctx: ActionContext, params: ReactivateKeysParams) -> ReactivateKeysResult:
    iam = clients_for(ctx, params.account, region_of(ctx, params))("iam")
    statuses = list_key_statuses(iam, params.user)
    reactivated: list[str] = []
    already: list[str] = []
    missing: list[str] = []
    for key_id in dict.fromkeys(params.key_ids):
        status = statuses.get(key_id)
        if status is None:
            missing.append(key_id)
        elif status == "Active":
            already.append(key_id)
        else:
            _set_status(iam, params.user, key_id, "Active")
            reactivated.append(key_id)
            ctx.record(
                "aws.iam.access_key_reactivated",
                {"account": params.account, "user": params.user, "access_key_id": key_id},
            )
    return ReactivateKeysResult(
        account=params.account,
        user=params.user,
        reactivated=reactivated,
        already_active=already,
        missing=missing,
    )


def _describe_reactivate(ctx: ActionContext, params: ReactivateKeysParams) -> list[PlannedOperation]:
    return [
        PlannedOperation(
            service="iam",
            operation="UpdateAccessKey",
            account=params.account,
            resources=[f"user/{params.user}/{k}" for k in params.key_ids],
            note="Inactive -> Active",
        )
    ]


def _compensation_params(params: DeactivateKeysParams, result: DeactivateKeysResult) -> dict[str, Any]:
    # Only the keys this step switched off: keys that were already Inactive stay Inactive.
    out: dict[str, Any] = {
        "account": params.account,
        "user": params.user,
        "key_ids": list(result.deactivated),
    }
    if params.region:
        out["region"] = params.region
    return out


DEACTIVATE: ActionSpec[DeactivateKeysParams, DeactivateKeysResult] = ActionSpec(
    name="aws.iam.deactivate_access_keys",
    summary="Switch every Active access key of an IAM user to Inactive (reversible containment).",
    params=DeactivateKeysParams,
    result=DeactivateKeysResult,
    run=_deactivate,
    mutating=True,
    idempotent=True,
    describe=safe_describe(_describe_deactivate, _plan_deactivate_blind),
    compensation="aws.iam.reactivate_access_keys",
    compensation_params=_compensation_params,
)

REACTIVATE: ActionSpec[ReactivateKeysParams, ReactivateKeysResult] = ActionSpec(
    name="aws.iam.reactivate_access_keys",
    summary="Switch the given access keys of an IAM user back to Active (undo of deactivate).",
    params=ReactivateKeysParams,
    result=ReactivateKeysResult,
    run=_reactivate,
    mutating=True,
    idempotent=True,
    describe=_describe_reactivate,
)
