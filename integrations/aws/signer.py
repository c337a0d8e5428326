"""Rotate an AWS Signer signing profile: put a new profile, cancel the old one.

Owns: ``aws.signer.rotate_signing_profile``. The new profile is ``<base>_<yyyymmddHHMM>`` (``base``
is the old name without an earlier ``_<12 digits>`` suffix), with the old profile's platform
(overridable), signature validity and signing material (``certificate_arn`` overrides it, e.g. the
certificate just rotated). The old profile is then cancelled: no new signing jobs can use it.

Idempotency (crash-safe, without ``ListSigningProfiles``): before creating anything the old
profile is tagged ``stanch:rotation-token`` / ``stanch:rotated-to`` / ``stanch:rotation-state=pending``;
after the new profile exists the state becomes ``created``. A re-run reads those tags and resumes.

Not done here (not in moto 5.2.5, so untested — see docs/aws-actions.md): ``RevokeSigningProfile`` /
``RevokeSignature`` (invalidating signatures already made), signing jobs, and pointing Lambda code
signing configs at the new profile version. No compensation: a cancelled profile cannot be
re-activated; the undo of a rotation is another rotation.

Must not touch: ``flows``, ``prefect``.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from integrations.aws._common import AwsParams, is_code, region_of, safe_describe, stamp, token_uuid
from integrations.aws.errors import aws_call
from integrations.aws.session import clients_for
from integrations.base import ActionContext, ActionResult, ActionSpec, PlannedOperation
from integrations.errors import PermanentActionError

__all__ = ["ROTATE", "RotateProfileParams", "RotateProfileResult", "new_profile_name"]

_TOKEN, _TO, _STATE = "stanch:rotation-token", "stanch:rotated-to", "stanch:rotation-state"
_SUFFIX = re.compile(r"_\d{12}$")


class RotateProfileParams(AwsParams):
    profile_name: str = Field(pattern=r"^[a-zA-Z0-9_]{2,64}$", description="The profile to replace")
    platform_id: str = Field(default="AWSLambda-SHA384-ECDSA", min_length=1)
    certificate_arn: str | None = Field(
        default=None, description="Signing certificate (ACM ARN) for the new profile; default: the old one's"
    )


class RotateProfileResult(ActionResult):
    old_profile_name: str
    old_profile_arn: str
    old_status: str = Field(description="Status of the old profile before this step")
    new_profile_name: str
    new_profile_arn: str
    new_profile_version_arn: str | None
    platform_id: str
    rotated: bool = Field(description="False when this step had already created the new profile")
    cancelled_old: bool = Field(description="True when this run cancelled the old profile")


def new_profile_name(old: str, suffix: str) -> str:
    base = _SUFFIX.sub("", old)[: 64 - len(suffix) - 1]
    return f"{base}_{suffix}"


def _get(signer: Any, name: str) -> dict[str, Any]:
    with aws_call("signer", "GetSigningProfile"):
        return dict(signer.get_signing_profile(profileName=name))


def _tag(signer: Any, arn: str, tags: dict[str, str]) -> None:
    with aws_call("signer", "TagResource"):
        signer.tag_resource(resourceArn=arn, tags=tags)


def _put(ctx: ActionContext, signer: Any, params: RotateProfileParams, old: dict[str, Any], name: str) -> str | None:
    kwargs: dict[str, Any] = {
        "profileName": name,
        "platformId": params.platform_id,
        "tags": {"stanch:incident": ctx.incident_id, "stanch:replaces": params.profile_name},
    }
    material = {"certificateArn": params.certificate_arn} if params.certificate_arn else old.get("signingMaterial")
    if material:
        kwargs["signingMaterial"] = material
    if old.get("signatureValidityPeriod"):
        kwargs["signatureValidityPeriod"] = old["signatureValidityPeriod"]
    try:
        with aws_call("signer", "PutSigningProfile"):
            return signer.put_signing_profile(**kwargs).get("profileVersionArn")
    except PermanentActionError as exc:
        if is_code(exc, "ConflictException"):  # made by our interrupted earlier attempt
            return None
        raise


def _rotate(ctx: ActionContext, params: RotateProfileParams) -> RotateProfileResult:
    signer = clients_for(ctx, params.account, region_of(ctx, params))("signer")
    token = token_uuid(ctx, "signing-profile")
    old = _get(signer, params.profile_name)
    tags = dict(old.get("tags") or {})
    ours = tags.get(_TOKEN) == token and bool(tags.get(_TO))
    new_name = tags[_TO] if ours else new_profile_name(params.profile_name, stamp())
    rotated = False
    version_arn: str | None = None
    if not ours:
        _tag(signer, old["arn"], {_TOKEN: token, _TO: new_name, _STATE: "pending"})
    if not ours or tags.get(_STATE) != "created":
        version_arn = _put(ctx, signer, params, old, new_name)
        rotated = True
        _tag(signer, old["arn"], {_STATE: "created"})
    cancelled = False
    if old.get("status") != "Canceled":
        with aws_call("signer", "CancelSigningProfile"):
            signer.cancel_signing_profile(profileName=params.profile_name)
        cancelled = True
    new = _get(signer, new_name)
    if rotated or cancelled:
        ctx.record(
            "aws.signer.signing_profile_rotated",
            {"old_profile": params.profile_name, "new_profile": new_name, "old_cancelled": cancelled},
        )
    return RotateProfileResult(
        old_profile_name=params.profile_name,
        old_profile_arn=old["arn"],
        old_status=str(old.get("status", "")),
        new_profile_name=new_name,
        new_profile_arn=new["arn"],
        new_profile_version_arn=version_arn or new.get("profileVersionArn"),
        platform_id=str(new.get("platformId", params.platform_id)),
        rotated=rotated,
        cancelled_old=cancelled,
    )


def _plan(params: RotateProfileParams, new_name: str, note: str) -> list[PlannedOperation]:
    def op(operation: str, resource: str, text: str) -> PlannedOperation:
        return PlannedOperation(
            service="signer",
            operation=operation,
            account=params.account,
            region=params.region,
            resources=[resource],
            note=text,
        )

    return [
        op("PutSigningProfile", new_name, f"platform {params.platform_id}; {note}"),
        op("CancelSigningProfile", params.profile_name, "no new signing jobs; existing signatures stay valid"),
    ]


def _describe(ctx: ActionContext, params: RotateProfileParams) -> list[PlannedOperation]:
    old = _get(clients_for(ctx, params.account, region_of(ctx, params))("signer"), params.profile_name)
    material = params.certificate_arn or (old.get("signingMaterial") or {}).get("certificateArn") or "AWS-managed"
    return _plan(
        params,
        new_profile_name(params.profile_name, "<yyyymmddHHMM>"),
        f"signing material {material}; old profile is {old.get('status')}",
    )


def _describe_blind(ctx: ActionContext, params: RotateProfileParams) -> list[PlannedOperation]:
    return _plan(params, new_profile_name(params.profile_name, "<yyyymmddHHMM>"), "copies the old profile's settings")


ROTATE: ActionSpec[RotateProfileParams, RotateProfileResult] = ActionSpec(
    name="aws.signer.rotate_signing_profile",
    summary="Create <profile>_<yyyymmddHHMM> with the old profile's settings and cancel the old profile.",
    params=RotateProfileParams,
    result=RotateProfileResult,
    run=_rotate,
    mutating=True,
    idempotent=True,
    describe=safe_describe(_describe, _describe_blind),
)
