"""One leaked IAM access key: find its owner, switch off exactly that key, fence its user.

Owns: ``aws.iam.find_access_key`` (read-only: which account and user own a key id, across the
inventory's accounts, and what the key did last), ``aws.iam.deactivate_access_key`` (exactly one
key -> Inactive; undo: ``aws.iam.reactivate_access_keys``), ``aws.iam.attach_deny_all_policy``
and its compensation ``aws.iam.detach_deny_all_policy`` (an explicit inline ``Deny * on *`` on
the user: it beats every Allow, for the user's long-term keys and for the sessions they minted).

All are check-then-act: a key already Inactive, a deny policy already in place, a policy already
gone are successes. Only key *ids* are returned or recorded — never secrets.

Must not touch: ``flows``, ``prefect``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import unquote

from pydantic import Field

from integrations.aws._common import (
    ACCOUNT_PATTERN,
    SKIP_REASON_DOC,
    AwsParams,
    is_code,
    region_of,
    safe_describe,
    token_uuid,
    where,
)
from integrations.aws.errors import aws_call
from integrations.aws.iam import list_key_statuses
from integrations.aws.session import clients_for
from integrations.base import ActionContext, ActionParams, ActionResult, ActionSpec, PlannedOperation
from integrations.errors import ConfigurationError, PermanentActionError

__all__ = [
    "ATTACH_DENY",
    "DEACTIVATE_ONE",
    "DENY_POLICY_NAME",
    "DETACH_DENY",
    "FIND_KEY",
    "deny_all_policy",
]

KEY_ID_PATTERN = r"^AKIA[A-Z0-9]{16}$"
DENY_POLICY_NAME = "StanchDenyAll"


# --------------------------------------------------------------------------- find_access_key


class FindKeyParams(ActionParams):
    file_params: ClassVar[dict[str, str]] = {"inventory": "path"}

    access_key_id: str = Field(pattern=KEY_ID_PATTERN, description="The long-term key id (AKIA…), never the secret")
    accounts: list[str] = Field(
        default_factory=list, description="Accounts to search; empty = every account of the inventory"
    )
    inventory: str | None = Field(default=None, description="Inventory file (empty = STANCH_INVENTORY)")
    region: str | None = Field(default=None, description="Defaults to STANCH_AWS_REGION")


class FindKeyResult(ActionResult):
    access_key_id: str
    account: str
    user: str
    status: str = Field(description="Active or Inactive, now")
    created: datetime | None = None
    last_used_at: datetime | None = Field(default=None, description="GetAccessKeyLastUsed: when (None: never)")
    last_used_service: str | None = None
    last_used_region: str | None = None
    other_keys: list[str] = Field(description="The user's other access key ids (rotated later)")
    accounts_searched: list[str]


def _accounts(ctx: ActionContext, params: FindKeyParams) -> list[str]:
    import re

    if params.accounts:
        accounts = list(dict.fromkeys(params.accounts))
    else:
        from integrations.inventory.model import load_inventory

        path = params.inventory or ctx.settings.inventory
        if not path:
            raise PermanentActionError("find_access_key: give accounts or an inventory (or set STANCH_INVENTORY)")
        try:
            accounts = list(dict.fromkeys(s.account for s in load_inventory(path).services))
        except ConfigurationError as exc:
            raise PermanentActionError(str(exc)) from None
    bad = [a for a in accounts if not re.match(ACCOUNT_PATTERN, a)]
    if bad:
        raise PermanentActionError(f"not 12-digit account ids: {', '.join(bad)}")
    return accounts


def _list_users(iam: Any) -> list[str]:
    users: list[str] = []
    marker: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Marker": marker} if marker else {}
        with aws_call("iam", "ListUsers"):
            page = iam.list_users(**kwargs)
        users += [u["UserName"] for u in page.get("Users", [])]
        if not page.get("IsTruncated"):
            return users
        marker = page.get("Marker")


def _owner_in(iam: Any, key_id: str) -> tuple[str, dict[str, str], dict[str, Any]] | None:
    """(user, that user's key statuses, last-used facts) if ``key_id`` belongs to this account."""
    hint: str | None = None
    last: dict[str, Any] = {}
    try:
        with aws_call("iam", "GetAccessKeyLastUsed"):
            resp = iam.get_access_key_last_used(AccessKeyId=key_id)
        hint, last = resp.get("UserName"), dict(resp.get("AccessKeyLastUsed") or {})
    except PermanentActionError as exc:
        if not is_code(exc, "NoSuchEntity", "AccessDenied", "AccessDeniedException"):
            raise
    # The hint is only a hint (another account's key can answer, e.g. in moto): ListAccessKeys in
    # *this* account decides. Without a hint, every user of the account is listed.
    candidates = [hint] if hint else _list_users(iam)
    for user in candidates:
        try:
            statuses = list_key_statuses(iam, user)
        except PermanentActionError as exc:
            if is_code(exc, "NoSuchEntity"):
                continue
            raise
        if key_id in statuses:
            return user, statuses, last
    if hint:  # the hint named a user this account does not have: scan it properly
        for user in _list_users(iam):
            statuses = list_key_statuses(iam, user)
            if key_id in statuses:
                return user, statuses, last
    return None


def _created(iam: Any, user: str, key_id: str) -> datetime | None:
    with aws_call("iam", "ListAccessKeys"):
        page = iam.list_access_keys(UserName=user)
    for meta in page.get("AccessKeyMetadata", []):
        if meta["AccessKeyId"] == key_id and isinstance(meta.get("CreateDate"), datetime):
            return meta["CreateDate"]
    return None


def _find(ctx: ActionContext, params: FindKeyParams) -> FindKeyResult:
    accounts = _accounts(ctx, params)
    region = params.region or ctx.settings.aws_region
    for account in accounts:
        iam = clients_for(ctx, account, region)("iam")
        found = _owner_in(iam, params.access_key_id)
        if found is None:
            continue
        user, statuses, last = found
        used = last.get("LastUsedDate")
        service, used_region = last.get("ServiceName"), last.get("Region")
        ctx.record(
            "aws.iam.access_key_found",
            {"access_key_id": params.access_key_id, "account": account, "user": user,
             "status": statuses[params.access_key_id]},
        )
        return FindKeyResult(
            access_key_id=params.access_key_id,
            account=account,
            user=user,
            status=statuses[params.access_key_id],
            created=_created(iam, user, params.access_key_id),
            last_used_at=used if isinstance(used, datetime) else None,
            last_used_service=None if service in (None, "N/A") else str(service),
            last_used_region=None if used_region in (None, "N/A") else str(used_region),
            other_keys=sorted(k for k in statuses if k != params.access_key_id),
            accounts_searched=accounts[: accounts.index(account) + 1],
        )
    raise PermanentActionError(
        f"access key {params.access_key_id} belongs to no IAM user of the {len(accounts)} account(s) "
        f"searched ({', '.join(accounts)})",
        operation="ListAccessKeys",
    )


def _describe_find(ctx: ActionContext, params: FindKeyParams) -> list[PlannedOperation]:
    try:
        accounts = _accounts(ctx, params)
    except (ConfigurationError, PermanentActionError) as exc:
        return [PlannedOperation(service="iam", operation="GetAccessKeyLastUsed", note=f"accounts unknown ({exc})")]
    return [
        PlannedOperation(
            service="iam",
            operation="GetAccessKeyLastUsed",
            account=a,
            resources=[params.access_key_id],
            note="read-only; then ListAccessKeys (ListUsers if needed)",
        )
        for a in accounts
    ]


FIND_KEY: ActionSpec[FindKeyParams, FindKeyResult] = ActionSpec(
    name="aws.iam.find_access_key",
    summary="Find the account and IAM user owning an access key id across accounts, and its last use.",
    params=FindKeyParams,
    result=FindKeyResult,
    run=_find,
    mutating=False,
    idempotent=True,
    describe=_describe_find,
)


# --------------------------------------------------------------------------- deactivate_access_key


class DeactivateOneParams(AwsParams):
    user: str = Field(min_length=1)
    access_key_id: str = Field(pattern=KEY_ID_PATTERN)


class DeactivateOneResult(ActionResult):
    account: str
    user: str
    access_key_id: str
    deactivated: bool = Field(description="True when this incident switched the key off")
    previous_status: str = Field(description="The key's status before this incident acted")


def _deactivate_one(ctx: ActionContext, params: DeactivateOneParams) -> DeactivateOneResult:
    iam = clients_for(ctx, params.account, region_of(ctx, params))("iam")
    statuses = list_key_statuses(iam, params.user)
    if params.access_key_id not in statuses:
        raise PermanentActionError(
            f"user {params.user!r} in {params.account} has no access key {params.access_key_id}",
            operation="UpdateAccessKey",
            aws_code="NoSuchEntity",
        )
    subject = f"iam:{params.account}:user/{params.user}/{params.access_key_id}"
    before = str(ctx.observe(subject, {"status": statuses[params.access_key_id]}).get("status"))
    base = {"account": params.account, "user": params.user, "access_key_id": params.access_key_id}
    if statuses[params.access_key_id] == "Inactive":
        ours = before == "Active"  # an earlier attempt switched it off and crashed before recording it
        if ours:
            ctx.record_once("aws.iam.access_key_deactivated", {**base, "reconciled": True}, match=("access_key_id",))
        return DeactivateOneResult(**base, deactivated=ours, previous_status=before)
    with aws_call("iam", "UpdateAccessKey"):
        iam.update_access_key(UserName=params.user, AccessKeyId=params.access_key_id, Status="Inactive")
    ctx.record("aws.iam.access_key_deactivated", base)
    return DeactivateOneResult(**base, deactivated=True, previous_status=before)


def _describe_deactivate_one(ctx: ActionContext, params: DeactivateOneParams) -> list[PlannedOperation]:
    iam = clients_for(ctx, params.account, region_of(ctx, params))("iam")
    statuses = list_key_statuses(iam, params.user)
    status = statuses.get(params.access_key_id)
    others = len(statuses) - (status is not None)
    if status is None:
        note = "the user has no such key: the step will fail"
    elif status == "Inactive":
        note = "nothing to do: already Inactive"
    else:
        note = f"Active -> Inactive; the user's {others} other key(s) untouched"
    return [PlannedOperation(service="iam", operation="UpdateAccessKey", account=params.account,
                             resources=[f"user/{params.user}/{params.access_key_id}"], note=note)]


def _blind_deactivate_one(ctx: ActionContext, params: DeactivateOneParams) -> list[PlannedOperation]:
    return [PlannedOperation(service="iam", operation="UpdateAccessKey", account=params.account,
                             resources=[f"user/{params.user}/{params.access_key_id}"], note="Active -> Inactive")]


def _reactivate_params(params: DeactivateOneParams, result: DeactivateOneResult) -> dict[str, Any]:
    return {**where(params), "user": params.user, "key_ids": [params.access_key_id] if result.deactivated else []}


DEACTIVATE_ONE: ActionSpec[DeactivateOneParams, DeactivateOneResult] = ActionSpec(
    name="aws.iam.deactivate_access_key",
    summary="Switch exactly one access key of an IAM user to Inactive; the user's other keys are untouched.",
    params=DeactivateOneParams,
    result=DeactivateOneResult,
    run=_deactivate_one,
    mutating=True,
    idempotent=True,
    describe=safe_describe(_describe_deactivate_one, _blind_deactivate_one),
    compensation="aws.iam.reactivate_access_keys",
    compensation_params=_reactivate_params,
)


# --------------------------------------------------------------------------- deny-all policy


def deny_all_policy(sid: str) -> dict[str, Any]:
    """Explicit deny of everything: beats every Allow, for keys and sessions of the principal."""
    return {"Version": "2012-10-17",
            "Statement": [{"Sid": sid, "Effect": "Deny", "Action": "*", "Resource": "*"}]}


def _sid(ctx: ActionContext) -> str:
    return "StanchDenyAll" + token_uuid(ctx, "deny-all").replace("-", "")


class AttachDenyParams(AwsParams):
    user: str = Field(min_length=1)
    policy_name: str = Field(default=DENY_POLICY_NAME, pattern=r"^[\w+=,.@-]{1,128}$")


class AttachDenyResult(ActionResult):
    account: str
    user: str
    policy_name: str
    sid: str = Field(description="Statement id of the policy in place (ours carries the step token)")
    attached: bool = Field(description="True when this incident put the policy")
    ours: bool = Field(description="False: a deny-all of someone else was already there (left as is)")


class DetachDenyParams(AwsParams):
    user: str = Field(min_length=1)
    policy_name: str = Field(default=DENY_POLICY_NAME, pattern=r"^[\w+=,.@-]{1,128}$")
    expected_sid: str | None = Field(default=None, description="Only delete the policy if its statement is ours")
    skip_reason: str | None = Field(default=None, description=SKIP_REASON_DOC)


class DetachDenyResult(ActionResult):
    account: str
    user: str
    policy_name: str
    removed: bool
    skipped: str | None = None


def _read_policy(iam: Any, user: str, name: str) -> dict[str, Any] | None:
    try:
        with aws_call("iam", "GetUserPolicy"):
            doc = iam.get_user_policy(UserName=user, PolicyName=name)["PolicyDocument"]
    except PermanentActionError as exc:
        if is_code(exc, "NoSuchEntity"):  # no such policy (callers that care check the user first)
            return None
        raise
    if isinstance(doc, str):
        doc = json.loads(unquote(doc))
    return doc if isinstance(doc, dict) else None


def _statement(doc: dict[str, Any]) -> dict[str, Any]:
    stmts = doc.get("Statement")
    if isinstance(stmts, list) and len(stmts) == 1 and isinstance(stmts[0], dict):
        return stmts[0]
    return stmts if isinstance(stmts, dict) else {}


def _is_deny_all(doc: dict[str, Any]) -> bool:
    st = _statement(doc)
    action, resource = st.get("Action"), st.get("Resource")
    return (st.get("Effect") == "Deny" and action in ("*", ["*"]) and resource in ("*", ["*"])
            and not st.get("Condition"))


def _ensure_user(iam: Any, user: str) -> None:
    with aws_call("iam", "GetUser"):
        iam.get_user(UserName=user)


def _attach(ctx: ActionContext, params: AttachDenyParams) -> AttachDenyResult:
    iam = clients_for(ctx, params.account, region_of(ctx, params))("iam")
    _ensure_user(iam, params.user)
    sid = _sid(ctx)
    current = _read_policy(iam, params.user, params.policy_name)
    subject = f"iam:{params.account}:user/{params.user}/policy/{params.policy_name}"
    before = ctx.observe(subject, {"present": current is not None,
                                   "sid": _statement(current).get("Sid") if current else None})
    base = {"account": params.account, "user": params.user, "policy_name": params.policy_name}
    if current is not None:
        current_sid = str(_statement(current).get("Sid") or "")
        if current_sid == sid:  # ours: this incident put it (maybe an attempt that crashed before recording)
            attached = not before.get("present")
            if attached:
                ctx.record_once("aws.iam.deny_all_attached", {**base, "reconciled": True}, match=("user",))
            return AttachDenyResult(**base, sid=sid, attached=attached, ours=True)
        if _is_deny_all(current):
            return AttachDenyResult(**base, sid=current_sid, attached=False, ours=False)
        raise PermanentActionError(
            f"user {params.user!r} already has an inline policy {params.policy_name!r} that is not a deny-all: "
            "not overwritten (choose another policy_name)",
            operation="PutUserPolicy",
        )
    with aws_call("iam", "PutUserPolicy"):
        iam.put_user_policy(UserName=params.user, PolicyName=params.policy_name,
                            PolicyDocument=json.dumps(deny_all_policy(sid)))
    ctx.record("aws.iam.deny_all_attached", base)
    return AttachDenyResult(**base, sid=sid, attached=True, ours=True)


def _describe_attach(ctx: ActionContext, params: AttachDenyParams) -> list[PlannedOperation]:
    iam = clients_for(ctx, params.account, region_of(ctx, params))("iam")
    current = _read_policy(iam, params.user, params.policy_name)
    if current is None:
        note = "explicit Deny * on * for the user's keys and sessions"
    elif _is_deny_all(current):
        note = "nothing to do: a deny-all is already in place"
    else:
        note = f"refused: {params.policy_name} exists and is not a deny-all"
    return [PlannedOperation(service="iam", operation="PutUserPolicy", account=params.account,
                             resources=[f"user/{params.user}/policy/{params.policy_name}"], note=note)]


def _blind_attach(ctx: ActionContext, params: AttachDenyParams) -> list[PlannedOperation]:
    return [PlannedOperation(service="iam", operation="PutUserPolicy", account=params.account,
                             resources=[f"user/{params.user}/policy/{params.policy_name}"],
                             note="explicit Deny * on * for the user's keys and sessions")]


def _detach(ctx: ActionContext, params: DetachDenyParams) -> DetachDenyResult:
    base = {"account": params.account, "user": params.user, "policy_name": params.policy_name}
    if params.skip_reason:
        return DetachDenyResult(**base, removed=False, skipped=params.skip_reason)
    iam = clients_for(ctx, params.account, region_of(ctx, params))("iam")
    current = _read_policy(iam, params.user, params.policy_name)
    if current is None:
        return DetachDenyResult(**base, removed=False, skipped="no such policy")
    sid = str(_statement(current).get("Sid") or "")
    if params.expected_sid is not None and sid != params.expected_sid:
        return DetachDenyResult(**base, removed=False, skipped=f"the policy in place ({sid}) is not ours: left alone")
    try:
        with aws_call("iam", "DeleteUserPolicy"):
            iam.delete_user_policy(UserName=params.user, PolicyName=params.policy_name)
    except PermanentActionError as exc:
        if not is_code(exc, "NoSuchEntity"):
            raise
        return DetachDenyResult(**base, removed=False, skipped="no such policy")
    ctx.record("aws.iam.deny_all_detached", base)
    return DetachDenyResult(**base, removed=True)


def _describe_detach(ctx: ActionContext, params: DetachDenyParams) -> list[PlannedOperation]:
    if params.skip_reason:
        return []
    return [PlannedOperation(service="iam", operation="DeleteUserPolicy", account=params.account,
                             resources=[f"user/{params.user}/policy/{params.policy_name}"],
                             note="only if the policy is still ours")]


def _detach_params(params: AttachDenyParams, result: AttachDenyResult) -> dict[str, Any]:
    out: dict[str, Any] = {**where(params), "user": params.user, "policy_name": params.policy_name,
                           "expected_sid": result.sid}
    if not result.attached:
        out["skip_reason"] = "the deny-all was already in place before this step"
    return out


ATTACH_DENY: ActionSpec[AttachDenyParams, AttachDenyResult] = ActionSpec(
    name="aws.iam.attach_deny_all_policy",
    summary="Put an explicit Deny * on * inline policy on an IAM user (its keys and sessions alike).",
    params=AttachDenyParams,
    result=AttachDenyResult,
    run=_attach,
    mutating=True,
    idempotent=True,
    describe=safe_describe(_describe_attach, _blind_attach),
    compensation="aws.iam.detach_deny_all_policy",
    compensation_params=_detach_params,
)

DETACH_DENY: ActionSpec[DetachDenyParams, DetachDenyResult] = ActionSpec(
    name="aws.iam.detach_deny_all_policy",
    summary="Delete the deny-all inline policy of an IAM user, only if it is ours (undo of attach).",
    params=DetachDenyParams,
    result=DetachDenyResult,
    run=_detach,
    mutating=True,
    idempotent=True,
    describe=_describe_detach,
)
