"""Ship a fixed build of a Lambda function behind an alias, and shift the alias back.

Owns: ``aws.lambda.deploy_version`` (``UpdateFunctionCode`` -> wait until the update finished ->
``PublishVersion`` -> ``UpdateAlias``) and its compensation ``aws.lambda.shift_alias`` (point the
alias back at the version it served before, only while it still points at ours). The alias must
exist: callers invoke the alias, so that is what a deploy moves.

Idempotency: the published version's description carries ``uuid5(ctx.idempotency_token)`` and the
version the alias served before; a re-run that finds such a version only makes sure the alias
points at it (and still reports the true previous version for the compensation). ``PublishVersion`` is
passed the ``CodeSha256`` just uploaded, so a concurrent code update is never published by us.
If the code equals what the alias already serves, Lambda returns the existing version and nothing
changes (``deployed: false``).

Must not touch: ``flows``, ``prefect``; ``$LATEST`` consumers, function configuration, layers.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

from pydantic import Field, model_validator

from integrations.aws._common import SKIP_REASON_DOC, AwsParams, region_of, safe_describe, token_uuid, where
from integrations.aws.errors import aws_call
from integrations.aws.session import clients_for
from integrations.base import ActionContext, ActionResult, ActionSpec, PlannedOperation
from integrations.errors import PermanentActionError, TransientActionError

__all__ = ["DEPLOY", "SHIFT_ALIAS", "DeployParams", "DeployResult", "ShiftAliasParams", "ShiftAliasResult"]

UPDATE_WAIT_SECONDS = 60.0


class DeployParams(AwsParams):
    function_name: str = Field(min_length=1)
    alias: str = Field(min_length=1, description="Existing alias to move to the new version, e.g. live")
    s3_bucket: str | None = None
    s3_key: str | None = None
    s3_object_version: str | None = None
    zip_base64: str | None = Field(default=None, description="Deployment package, base64 (small packages only)")

    @model_validator(mode="after")
    def _one_source(self) -> DeployParams:
        s3 = self.s3_bucket is not None and self.s3_key is not None
        if s3 == (self.zip_base64 is not None) or (self.s3_bucket is None) != (self.s3_key is None):
            raise ValueError("give either s3_bucket and s3_key, or zip_base64")
        if self.zip_base64 is not None:
            try:
                base64.b64decode(self.zip_base64, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ValueError(f"zip_base64 is not base64: {exc}") from None
        return self


class DeployResult(ActionResult):
    function_name: str
    alias: str
    version: str = Field(description="Version the alias points at after this step")
    previous_version: str = Field(description="Version the alias pointed at before")
    code_sha256: str
    deployed: bool = Field(description="False when the alias already served this step's version")


class ShiftAliasParams(AwsParams):
    function_name: str = Field(min_length=1)
    alias: str = Field(min_length=1)
    version: str = Field(min_length=1, description="Version to point the alias at")
    expected_version: str | None = Field(default=None, description="Only shift while the alias is at this one")
    skip_reason: str | None = Field(default=None, description=SKIP_REASON_DOC)


class ShiftAliasResult(ActionResult):
    function_name: str
    alias: str
    version: str
    shifted: bool
    skipped: str | None = None


def _marker(ctx: ActionContext) -> str:
    return f"stanch {ctx.incident_id[:100]} {token_uuid(ctx, 'lambda-deploy')}"


def _alias_version(lam: Any, function: str, alias: str) -> str:
    with aws_call("lambda", "GetAlias"):
        return str(lam.get_alias(FunctionName=function, Name=alias)["FunctionVersion"])


def _find_version(lam: Any, function: str, marker: str) -> dict[str, Any] | None:
    kwargs: dict[str, Any] = {"FunctionName": function}
    while True:
        with aws_call("lambda", "ListVersionsByFunction"):
            page = lam.list_versions_by_function(**kwargs)
        for v in page.get("Versions", []):
            if v.get("Version") != "$LATEST" and marker in (v.get("Description") or ""):
                return dict(v)
        if not page.get("NextMarker"):
            return None
        kwargs["Marker"] = page["NextMarker"]


def _wait_updated(lam: Any, function: str) -> None:
    deadline = time.monotonic() + UPDATE_WAIT_SECONDS
    delay = 0.5
    while True:
        with aws_call("lambda", "GetFunctionConfiguration"):
            cfg = lam.get_function_configuration(FunctionName=function)
        status = cfg.get("LastUpdateStatus", "Successful")
        if status == "Successful":
            return
        if status == "Failed":
            raise PermanentActionError(
                f"lambda {function}: code update failed: {cfg.get('LastUpdateStatusReason', '')}",
                operation="UpdateFunctionCode",
            )
        if time.monotonic() > deadline:
            raise TransientActionError(f"lambda {function}: code update still {status}", operation="UpdateFunctionCode")
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def _set_alias(lam: Any, function: str, alias: str, version: str) -> None:
    with aws_call("lambda", "UpdateAlias"):
        lam.update_alias(FunctionName=function, Name=alias, FunctionVersion=version)


def _deploy(ctx: ActionContext, params: DeployParams) -> DeployResult:
    lam = clients_for(ctx, params.account, region_of(ctx, params))("lambda")
    marker = _marker(ctx)
    current = previous = _alias_version(lam, params.function_name, params.alias)
    found = _find_version(lam, params.function_name, marker)
    if found is None:
        code: dict[str, Any] = {"FunctionName": params.function_name}
        if params.zip_base64 is not None:
            code["ZipFile"] = base64.b64decode(params.zip_base64)
        else:
            code.update(S3Bucket=params.s3_bucket, S3Key=params.s3_key)
            if params.s3_object_version:
                code["S3ObjectVersion"] = params.s3_object_version
        with aws_call("lambda", "UpdateFunctionCode"):
            sha = lam.update_function_code(**code)["CodeSha256"]
        _wait_updated(lam, params.function_name)
        with aws_call("lambda", "PublishVersion"):
            found = dict(
                lam.publish_version(
                    FunctionName=params.function_name, CodeSha256=sha, Description=f"{marker} prev {previous}"
                )
            )
    else:  # a re-run: the alias may have moved already; the first run noted what it served before
        previous = (found.get("Description") or "").rsplit(" prev ", 1)[-1] or previous
    version = str(found["Version"])
    base = {"function_name": params.function_name, "alias": params.alias, "code_sha256": found["CodeSha256"]}
    if current == version:  # a re-run, or the code is what the alias served (Lambda kept that version)
        return DeployResult(**base, version=version, previous_version=previous, deployed=False)
    _set_alias(lam, params.function_name, params.alias, version)
    ctx.record(
        "aws.lambda.version_deployed",
        {**base, "version": version, "previous_version": previous},
    )
    return DeployResult(**base, version=version, previous_version=previous, deployed=True)


def _plan(params: DeployParams, note: str) -> list[PlannedOperation]:
    source = f"s3://{params.s3_bucket}/{params.s3_key}" if params.s3_bucket else "inline zip"
    ops = [("UpdateFunctionCode", f"from {source}"), ("PublishVersion", ""), ("UpdateAlias", note)]
    return [
        PlannedOperation(
            service="lambda",
            operation=op,
            account=params.account,
            region=params.region,
            resources=[params.function_name if op != "UpdateAlias" else f"{params.function_name}:{params.alias}"],
            note=text or None,
        )
        for op, text in ops
    ]


def _describe(ctx: ActionContext, params: DeployParams) -> list[PlannedOperation]:
    lam = clients_for(ctx, params.account, region_of(ctx, params))("lambda")
    current = _alias_version(lam, params.function_name, params.alias)
    return _plan(params, f"alias {params.alias}: version {current} -> the new version")


def _describe_blind(ctx: ActionContext, params: DeployParams) -> list[PlannedOperation]:
    return _plan(params, f"alias {params.alias} -> the new version")


def _shift(ctx: ActionContext, params: ShiftAliasParams) -> ShiftAliasResult:
    base = {"function_name": params.function_name, "alias": params.alias}
    if params.skip_reason:
        return ShiftAliasResult(**base, version=params.version, shifted=False, skipped=params.skip_reason)
    lam = clients_for(ctx, params.account, region_of(ctx, params))("lambda")
    current = _alias_version(lam, params.function_name, params.alias)
    if current == params.version:
        return ShiftAliasResult(**base, version=current, shifted=False)
    if params.expected_version is not None and current != params.expected_version:
        return ShiftAliasResult(
            **base,
            version=current,
            shifted=False,
            skipped=f"alias is at version {current}, not ours ({params.expected_version}): left alone",
        )
    _set_alias(lam, params.function_name, params.alias, params.version)
    ctx.record("aws.lambda.alias_shifted", {**base, "version": params.version, "from_version": current})
    return ShiftAliasResult(**base, version=params.version, shifted=True)


def _describe_shift(ctx: ActionContext, params: ShiftAliasParams) -> list[PlannedOperation]:
    if params.skip_reason:
        return []
    return [
        PlannedOperation(
            service="lambda",
            operation="UpdateAlias",
            account=params.account,
            region=params.region,
            resources=[f"{params.function_name}:{params.alias}"],
            note=f"-> version {params.version}",
        )
    ]


def _compensation_params(params: DeployParams, result: DeployResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        **where(params),
        "function_name": params.function_name,
        "alias": params.alias,
        "version": result.previous_version,
        "expected_version": result.version,
    }
    if result.version == result.previous_version:
        out["skip_reason"] = "the alias already served this version before the step"
    return out


DEPLOY: ActionSpec[DeployParams, DeployResult] = ActionSpec(
    name="aws.lambda.deploy_version",
    summary="Update a Lambda function's code, publish a version and move an alias to it.",
    params=DeployParams,
    result=DeployResult,
    run=_deploy,
    mutating=True,
    idempotent=True,
    describe=safe_describe(_describe, _describe_blind),
    compensation="aws.lambda.shift_alias",
    compensation_params=_compensation_params,
)

SHIFT_ALIAS: ActionSpec[ShiftAliasParams, ShiftAliasResult] = ActionSpec(
    name="aws.lambda.shift_alias",
    summary="Point a Lambda alias at a given version (undo of deploy_version).",
    params=ShiftAliasParams,
    result=ShiftAliasResult,
    run=_shift,
    mutating=True,
    idempotent=True,
    describe=_describe_shift,
)
