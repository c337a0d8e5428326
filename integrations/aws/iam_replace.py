"""Replace an IAM user's access key with a new one whose secret lives only in Secrets Manager.

Owns: ``aws.iam.replace_access_key`` and its compensation ``aws.iam.revert_access_key_replacement``.
The new key's secret is returned by IAM exactly once: it goes straight into a Secrets Manager
version (``{"access_key_id", "secret_access_key"}`` JSON) and to ``ctx.redact`` — never into a
result, event or log. Then the replaced keys are switched to Inactive (deletion is a later,
approved step: ``aws.iam.delete_access_keys``).

Crash-safety: the secret version id is ``uuid5(ctx.idempotency_token)``. A re-run that finds that
version finds the key it created and only finishes (deactivates what is left). The user's key ids
are recorded before anything changes (``ctx.observe``): a key that is not in that before-image and
not in the stored version was created by an attempt that died before storing its secret — its
secret is lost, so it is deleted before a new key is created (never two new keys, never an orphan).

IAM allows two access keys per user: a user who already has two cannot get a replacement until one
is deleted (``LimitExceeded``, permanent).

Must not touch: ``flows``, ``prefect``.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from integrations.aws._common import SKIP_REASON_DOC, AwsParams, is_code, region_of, safe_describe, token_uuid, where
from integrations.aws.errors import aws_call
from integrations.aws.iam import list_key_statuses
from integrations.aws.session import clients_for
from integrations.base import ActionContext, ActionResult, ActionSpec, PlannedOperation
from integrations.errors import PermanentActionError

__all__ = ["REPLACE_KEY", "REVERT_REPLACEMENT"]

KEY_ID = r"^AKIA[A-Z0-9]{16}$"


class ReplaceKeyParams(AwsParams):
    user: str = Field(min_length=1)
    replaces: list[str] | None = Field(
        default=None, description="Key ids switched to Inactive once the new key is stored; None = every other key"
    )
    secret_name: str | None = Field(default=None, description="Receives the new key; default stanch/access-keys/<user>")


class ReplaceKeyResult(ActionResult):
    account: str
    user: str
    new_access_key_id: str
    created: bool = Field(description="False when a re-run found the key this step stored")
    deactivated: list[str] = Field(description="Replaced keys this step switched to Inactive")
    secret_name: str
    secret_arn: str
    secret_version_id: str


class RevertReplacementParams(AwsParams):
    user: str = Field(min_length=1)
    new_access_key_id: str = Field(description="The key the replacement created (deleted)")
    reactivate: list[str] = Field(default_factory=list, description="Keys the replacement switched off")
    skip_reason: str | None = Field(default=None, description=SKIP_REASON_DOC)


class RevertReplacementResult(ActionResult):
    account: str
    user: str
    deleted: bool
    reactivated: list[str]
    skipped: str | None = None


def _secret_name(params: ReplaceKeyParams) -> str:
    return params.secret_name or f"stanch/access-keys/{params.user}"


def _stored_key_id(ctx: ActionContext, sm: Any, name: str, version: str) -> tuple[str, str] | None:
    """(access key id, secret ARN) of this step's stored version, or None."""
    try:
        with aws_call("secretsmanager", "GetSecretValue"):
            resp = sm.get_secret_value(SecretId=name, VersionId=version)
    except PermanentActionError as exc:
        if is_code(exc, "ResourceNotFoundException"):
            return None
        raise
    raw = resp.get("SecretString") or ""
    ctx.redact(raw)
    doc = json.loads(raw)
    ctx.redact(str(doc.get("secret_access_key") or ""))
    return str(doc["access_key_id"]), str(resp["ARN"])


def _store(ctx: ActionContext, sm: Any, name: str, version: str, user: str, key: dict[str, Any]) -> str:
    value = json.dumps({"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]})
    ctx.redact(value)
    try:
        with aws_call("secretsmanager", "PutSecretValue"):
            return str(sm.put_secret_value(SecretId=name, SecretString=value, ClientRequestToken=version)["ARN"])
    except PermanentActionError as exc:
        if not is_code(exc, "ResourceNotFoundException"):
            raise
    with aws_call("secretsmanager", "CreateSecret"):
        return str(sm.create_secret(Name=name, SecretString=value, ClientRequestToken=version,
                                    Description=f"access key of IAM user {user} (stanch)")["ARN"])


def _replace(ctx: ActionContext, params: ReplaceKeyParams) -> ReplaceKeyResult:
    clients = clients_for(ctx, params.account, region_of(ctx, params))
    iam, sm = clients("iam"), clients("secretsmanager")
    name, version = _secret_name(params), token_uuid(ctx, "replace-access-key")
    statuses = list_key_statuses(iam, params.user)
    before = ctx.observe(f"iam:{params.account}:user/{params.user}/keys", {"statuses": dict(statuses)})
    was: dict[str, str] = dict(before.get("statuses") or {})
    known = set(was)
    stored = _stored_key_id(ctx, sm, name, version)
    base = {"account": params.account, "user": params.user}
    if stored is not None and stored[0] in statuses:
        new_id, arn, created = stored[0], stored[1], stored[0] not in known
        if created:
            ctx.record_once("aws.iam.access_key_created", {**base, "access_key_id": new_id, "secret_name": name,
                                                           "reconciled": True}, match=("access_key_id",))
    else:
        for orphan in sorted(set(statuses) - known):  # created by a dead attempt, secret never stored
            with aws_call("iam", "DeleteAccessKey"):
                iam.delete_access_key(UserName=params.user, AccessKeyId=orphan)
            statuses.pop(orphan)
            ctx.record("aws.iam.access_key_deleted", {**base, "access_key_id": orphan, "orphan": True})
        with aws_call("iam", "CreateAccessKey"):
            key = iam.create_access_key(UserName=params.user)["AccessKey"]
        ctx.redact(str(key["SecretAccessKey"]))
        arn = _store(ctx, sm, name, version, params.user, key)
        new_id, created = str(key["AccessKeyId"]), True
        ctx.record("aws.iam.access_key_created", {**base, "access_key_id": new_id, "secret_name": name})
    replaced = params.replaces if params.replaces is not None else sorted(known)
    deactivated: list[str] = []
    for key_id in replaced:
        if key_id == new_id or key_id not in statuses:
            continue
        if statuses[key_id] == "Active":
            with aws_call("iam", "UpdateAccessKey"):
                iam.update_access_key(UserName=params.user, AccessKeyId=key_id, Status="Inactive")
            ctx.record("aws.iam.access_key_deactivated", {**base, "access_key_id": key_id})
            deactivated.append(key_id)
        elif was.get(key_id) == "Active":
            deactivated.append(key_id)  # switched off by an earlier attempt of this step
    return ReplaceKeyResult(**base, new_access_key_id=new_id, created=created, deactivated=deactivated,
                            secret_name=name, secret_arn=arn, secret_version_id=version)


def _describe(ctx: ActionContext, params: ReplaceKeyParams) -> list[PlannedOperation]:
    iam = clients_for(ctx, params.account, region_of(ctx, params))("iam")
    statuses = list_key_statuses(iam, params.user)
    replaced = params.replaces if params.replaces is not None else sorted(statuses)
    return _plan(params, f"then Inactive: {', '.join(replaced) or 'none'}"
                 + ("; the user has 2 keys: IAM will refuse a third" if len(statuses) >= 2 else ""))


def _plan(params: ReplaceKeyParams, note: str) -> list[PlannedOperation]:
    return [
        PlannedOperation(service="iam", operation="CreateAccessKey", account=params.account,
                         resources=[f"user/{params.user}"], note=note),
        PlannedOperation(service="secretsmanager", operation="PutSecretValue", account=params.account,
                         region=params.region, resources=[_secret_name(params)],
                         note="the new key's secret (never shown)"),
    ]


def _describe_blind(ctx: ActionContext, params: ReplaceKeyParams) -> list[PlannedOperation]:
    return _plan(params, "then the replaced keys -> Inactive")


def _revert(ctx: ActionContext, params: RevertReplacementParams) -> RevertReplacementResult:
    base = {"account": params.account, "user": params.user}
    if params.skip_reason:
        return RevertReplacementResult(**base, deleted=False, reactivated=[], skipped=params.skip_reason)
    iam = clients_for(ctx, params.account, region_of(ctx, params))("iam")
    statuses = list_key_statuses(iam, params.user)
    reactivated: list[str] = []
    for key_id in params.reactivate:
        if statuses.get(key_id) == "Inactive":
            with aws_call("iam", "UpdateAccessKey"):
                iam.update_access_key(UserName=params.user, AccessKeyId=key_id, Status="Active")
            ctx.record("aws.iam.access_key_reactivated", {**base, "access_key_id": key_id})
            reactivated.append(key_id)
    deleted = False
    if params.new_access_key_id in statuses:
        with aws_call("iam", "DeleteAccessKey"):
            iam.delete_access_key(UserName=params.user, AccessKeyId=params.new_access_key_id)
        ctx.record("aws.iam.access_key_deleted", {**base, "access_key_id": params.new_access_key_id})
        deleted = True
    return RevertReplacementResult(**base, deleted=deleted, reactivated=reactivated)


def _describe_revert(ctx: ActionContext, params: RevertReplacementParams) -> list[PlannedOperation]:
    if params.skip_reason:
        return []
    return [PlannedOperation(service="iam", operation="DeleteAccessKey", account=params.account,
                             resources=[f"user/{params.user}/{params.new_access_key_id}"],
                             note=f"and Active again: {', '.join(params.reactivate) or 'none'}")]


def _revert_params(params: ReplaceKeyParams, result: ReplaceKeyResult) -> dict[str, Any]:
    out: dict[str, Any] = {**where(params), "user": params.user, "new_access_key_id": result.new_access_key_id,
                           "reactivate": list(result.deactivated)}
    if not result.created:
        out["skip_reason"] = "the replacement key existed before this attempt"
    return out


REPLACE_KEY: ActionSpec[ReplaceKeyParams, ReplaceKeyResult] = ActionSpec(
    name="aws.iam.replace_access_key",
    summary="Create a new access key (secret stored only in Secrets Manager) and switch the replaced keys off.",
    params=ReplaceKeyParams,
    result=ReplaceKeyResult,
    run=_replace,
    mutating=True,
    idempotent=True,
    describe=safe_describe(_describe, _describe_blind),
    compensation="aws.iam.revert_access_key_replacement",
    compensation_params=_revert_params,
)

REVERT_REPLACEMENT: ActionSpec[RevertReplacementParams, RevertReplacementResult] = ActionSpec(
    name="aws.iam.revert_access_key_replacement",
    summary="Delete the replacement access key and switch the replaced keys back on (undo of replace).",
    params=RevertReplacementParams,
    result=RevertReplacementResult,
    run=_revert,
    mutating=True,
    idempotent=True,
    describe=_describe_revert,
)
