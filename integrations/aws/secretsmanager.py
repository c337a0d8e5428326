"""Replace a Secrets Manager secret's value (runbook-driven rotation), and the undo.

Owns: ``aws.secretsmanager.rotate_secret`` and its compensation
``aws.secretsmanager.restore_secret_version``. ``rotate_secret`` writes a new version —
generated with ``secrets`` (``new_value_from: random``) or given (``provided``) — with
``PutSecretValue``, which moves ``AWSCURRENT`` to it and ``AWSPREVIOUS`` to the old one. With
``json_key`` the secret is a JSON object and only that key is replaced. The new value is
``ctx.redact()``-ed and never returned or recorded; results carry version ids only.

This changes what is *stored*. A credential that lives elsewhere too (a database password, an API
key at a vendor) must be changed there as well — that is the secret's rotation Lambda or another step.

Idempotency: the new version id is ``uuid5(ctx.idempotency_token)`` (the ``ClientRequestToken``).
If that version already exists the rotation happened; nothing is written again.
The compensation moves ``AWSCURRENT`` back to the old version, only while ours is still current.

Must not touch: ``flows``, ``prefect``.
"""

from __future__ import annotations

import json
import secrets
import string
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from integrations.aws._common import SKIP_REASON_DOC, AwsParams, region_of, safe_describe, token_uuid, where
from integrations.aws.errors import aws_call
from integrations.aws.session import clients_for
from integrations.base import ActionContext, ActionResult, ActionSpec, PlannedOperation
from integrations.errors import PermanentActionError

__all__ = [
    "RESTORE",
    "ROTATE",
    "RestoreSecretParams",
    "RestoreSecretResult",
    "RotateSecretParams",
    "RotateSecretResult",
    "generate_value",
]

ALPHABET = string.ascii_letters + string.digits + "-_.~+="


class RotateSecretParams(AwsParams):
    secret_id: str = Field(min_length=1, description="Secret name or ARN")
    new_value_from: Literal["random", "provided"] = "random"
    length: int = Field(default=32, ge=16, le=4096, description="Length of a generated value")
    value: SecretStr | None = Field(default=None, description="The new value when new_value_from is provided")
    json_key: str | None = Field(default=None, description="Replace only this key of a JSON secret")

    @model_validator(mode="after")
    def _value_matches_source(self) -> RotateSecretParams:
        if (self.new_value_from == "provided") != (self.value is not None):
            raise ValueError("value is required with new_value_from: provided, and only then")
        return self


class RotateSecretResult(ActionResult):
    secret_arn: str
    name: str
    version_id: str = Field(description="The new version (AWSCURRENT after this step)")
    previous_version_id: str | None = Field(description="The version that was AWSCURRENT before")
    rotated: bool = Field(description="False when this step's version already existed")
    current: bool = Field(description="Whether the new version is AWSCURRENT now")


class RestoreSecretParams(AwsParams):
    secret_id: str = Field(min_length=1)
    version_id: str = Field(min_length=1, description="Version to make AWSCURRENT again")
    expected_current: str | None = Field(
        default=None, description="Only move AWSCURRENT if it is still on this version (ours)"
    )
    skip_reason: str | None = Field(default=None, description=SKIP_REASON_DOC)


class RestoreSecretResult(ActionResult):
    name: str
    current_version_id: str | None
    restored: bool
    skipped: str | None = None


def generate_value(length: int) -> str:
    """A random value from ``ALPHABET`` (URL- and shell-friendly), made with ``secrets``."""
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def _stages(sm: Any, secret_id: str) -> tuple[str, str, dict[str, list[str]]]:
    """(ARN, name, {version_id: [stages]})."""
    with aws_call("secretsmanager", "DescribeSecret"):
        desc = sm.describe_secret(SecretId=secret_id)
    return desc["ARN"], desc["Name"], dict(desc.get("VersionIdsToStages") or {})


def _holding(stages: dict[str, list[str]], stage: str) -> str | None:
    return next((v for v, s in stages.items() if stage in s), None)


def _new_value(ctx: ActionContext, sm: Any, params: RotateSecretParams) -> str:
    fresh = params.value.get_secret_value() if params.value is not None else generate_value(params.length)
    ctx.redact(fresh)
    if params.json_key is None:
        return fresh
    with aws_call("secretsmanager", "GetSecretValue"):
        raw = sm.get_secret_value(SecretId=params.secret_id, VersionStage="AWSCURRENT").get("SecretString")
    try:
        doc = json.loads(raw or "")
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise PermanentActionError(
            f"secret {params.secret_id!r} is not a JSON object: cannot replace key {params.json_key!r}",
            operation="GetSecretValue",
        )
    doc[params.json_key] = fresh
    whole = json.dumps(doc)
    ctx.redact(whole)
    return whole


def _rotate(ctx: ActionContext, params: RotateSecretParams) -> RotateSecretResult:
    if params.value is not None:
        ctx.redact(params.value.get_secret_value())
    sm = clients_for(ctx, params.account, region_of(ctx, params))("secretsmanager")
    version_id = token_uuid(ctx, "rotate-secret")
    arn, name, stages = _stages(sm, params.secret_id)
    if version_id in stages:
        current = "AWSCURRENT" in stages[version_id]
        previous = _holding(stages, "AWSPREVIOUS") if current else _holding(stages, "AWSCURRENT")
        return RotateSecretResult(
            secret_arn=arn,
            name=name,
            version_id=version_id,
            previous_version_id=previous,
            rotated=False,
            current=current,
        )
    previous = _holding(stages, "AWSCURRENT")
    value = _new_value(ctx, sm, params)
    with aws_call("secretsmanager", "PutSecretValue"):
        sm.put_secret_value(SecretId=params.secret_id, SecretString=value, ClientRequestToken=version_id)
    ctx.record(
        "aws.secretsmanager.secret_rotated",
        {"secret_arn": arn, "version_id": version_id, "previous_version_id": previous},
    )
    return RotateSecretResult(
        secret_arn=arn, name=name, version_id=version_id, previous_version_id=previous, rotated=True, current=True
    )


def _plan(params: RotateSecretParams, note: str) -> list[PlannedOperation]:
    what = "generated" if params.new_value_from == "random" else "provided"
    key = f" (key {params.json_key!r} of the JSON)" if params.json_key else ""
    return [
        PlannedOperation(
            service="secretsmanager",
            operation="PutSecretValue",
            account=params.account,
            region=params.region,
            resources=[params.secret_id],
            note=f"new {what} value{key} becomes AWSCURRENT (never shown); {note}",
        )
    ]


def _describe(ctx: ActionContext, params: RotateSecretParams) -> list[PlannedOperation]:
    sm = clients_for(ctx, params.account, region_of(ctx, params))("secretsmanager")
    _, _, stages = _stages(sm, params.secret_id)
    if token_uuid(ctx, "rotate-secret") in stages:
        return []
    return _plan(params, f"previous AWSCURRENT {_holding(stages, 'AWSCURRENT')} becomes AWSPREVIOUS")


def _describe_blind(ctx: ActionContext, params: RotateSecretParams) -> list[PlannedOperation]:
    return _plan(params, "the old version becomes AWSPREVIOUS")


def _restore(ctx: ActionContext, params: RestoreSecretParams) -> RestoreSecretResult:
    if params.skip_reason:
        return RestoreSecretResult(
            name=params.secret_id, current_version_id=None, restored=False, skipped=params.skip_reason
        )
    sm = clients_for(ctx, params.account, region_of(ctx, params))("secretsmanager")
    _, name, stages = _stages(sm, params.secret_id)
    current = _holding(stages, "AWSCURRENT")
    if current == params.version_id:
        return RestoreSecretResult(name=name, current_version_id=current, restored=False)
    if params.expected_current is not None and current != params.expected_current:
        return RestoreSecretResult(
            name=name,
            current_version_id=current,
            restored=False,
            skipped=f"AWSCURRENT is on {current}, not on our version {params.expected_current}: left alone",
        )
    if params.version_id not in stages:
        raise PermanentActionError(
            f"secret {name!r} has no version {params.version_id} to restore", operation="UpdateSecretVersionStage"
        )
    with aws_call("secretsmanager", "UpdateSecretVersionStage"):
        sm.update_secret_version_stage(
            SecretId=params.secret_id,
            VersionStage="AWSCURRENT",
            MoveToVersionId=params.version_id,
            RemoveFromVersionId=current,
        )
    ctx.record(
        "aws.secretsmanager.secret_version_restored",
        {"name": name, "version_id": params.version_id, "replaced_version_id": current},
    )
    return RestoreSecretResult(name=name, current_version_id=params.version_id, restored=True)


def _describe_restore(ctx: ActionContext, params: RestoreSecretParams) -> list[PlannedOperation]:
    if params.skip_reason:
        return []
    return [
        PlannedOperation(
            service="secretsmanager",
            operation="UpdateSecretVersionStage",
            account=params.account,
            region=params.region,
            resources=[params.secret_id],
            note=f"AWSCURRENT -> {params.version_id}",
        )
    ]


def _compensation_params(params: RotateSecretParams, result: RotateSecretResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        **where(params),
        "secret_id": result.secret_arn,
        "version_id": result.previous_version_id or "",
        "expected_current": result.version_id,
    }
    if result.previous_version_id is None:
        out["version_id"] = "none"
        out["skip_reason"] = "the secret had no AWSCURRENT version before this step"
    return out


ROTATE: ActionSpec[RotateSecretParams, RotateSecretResult] = ActionSpec(
    name="aws.secretsmanager.rotate_secret",
    summary="Put a new (generated or given) secret value as AWSCURRENT; the old version stays as AWSPREVIOUS.",
    params=RotateSecretParams,
    result=RotateSecretResult,
    run=_rotate,
    mutating=True,
    idempotent=True,
    describe=safe_describe(_describe, _describe_blind),
    compensation="aws.secretsmanager.restore_secret_version",
    compensation_params=_compensation_params,
)

RESTORE: ActionSpec[RestoreSecretParams, RestoreSecretResult] = ActionSpec(
    name="aws.secretsmanager.restore_secret_version",
    summary="Move AWSCURRENT back to an earlier secret version (undo of rotate_secret).",
    params=RestoreSecretParams,
    result=RestoreSecretResult,
    run=_restore,
    mutating=True,
    idempotent=True,
    describe=_describe_restore,
)
