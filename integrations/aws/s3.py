"""Publish an app release manifest to S3 (how the desktop app learns it must update).

Owns: ``aws.s3.publish_release`` and its compensation ``aws.s3.restore_release``, and the
manifest format: a JSON document ``{"schema": 1, "version", "min_supported_version", "pinned",
["removed",] "notes", "incident", "published_at"}`` (``removed`` only when the release dropped
dependencies). Its SHA-256 (hex, of the exact bytes written) is returned, stored as object
metadata ``sha256`` and sent as the S3 ``ChecksumSHA256`` so S3 verifies it.

Idempotency: if the current manifest already announces ``version`` it is returned unchanged.
Exactly once against the world: the current object version is recorded before the write (a
before-image, ``ctx.observe``). Re-run after a crash, a manifest announcing ``version`` that this
incident wrote (its ``incident`` field) over the recorded version is this step's own publish:
it is not written again, its event is recorded once, and it is reported ``published`` with the
recorded version as ``previous_version_id`` so the compensation restores it.
Publishing a version *lower* than the current one is refused (PermanentActionError).
The bucket must exist; versioning is switched on if it is off, so every manifest stays
recoverable and ``restore_release`` can put the previous one back.

Must not touch: ``flows``, ``prefect``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from packaging.version import InvalidVersion, Version
from pydantic import Field

from integrations.aws._common import AwsParams, region_of, safe_describe
from integrations.aws.errors import aws_call
from integrations.aws.session import clients_for
from integrations.base import ActionContext, ActionResult, ActionSpec, PlannedOperation
from integrations.errors import PermanentActionError

__all__ = [
    "PUBLISH",
    "RESTORE",
    "PublishReleaseParams",
    "PublishReleaseResult",
    "RestoreReleaseParams",
    "RestoreReleaseResult",
    "read_manifest",
]


class PublishReleaseParams(AwsParams):
    bucket: str = Field(min_length=3)
    key: str = "release/latest.json"
    version: str = Field(min_length=1, description="New app version, e.g. 4.2.1")
    min_supported_version: str = Field(min_length=1, description="Older clients are told they must update")
    pinned: dict[str, str] = Field(
        default_factory=dict, description='Dependency pins, e.g. {"axios": "1.14.0"}'
    )
    remove: list[str] = Field(
        default_factory=list, description='Dependencies the release dropped, e.g. ["plain-crypto-js"]'
    )
    notes: str = ""


class PublishReleaseResult(ActionResult):
    bucket: str
    key: str
    version_id: str | None
    version: str
    sha256: str
    previous_version_id: str | None = None
    published: bool = Field(default=True, description="False when the manifest already had this version")


class RestoreReleaseParams(AwsParams):
    bucket: str
    key: str = "release/latest.json"
    version_id: str | None = Field(
        description="Object version to make current again; None deletes the manifest"
    )
    expected_version_id: str | None = Field(
        default=None, description="Only restore if the current object is still this version (our publish)"
    )


class RestoreReleaseResult(ActionResult):
    bucket: str
    key: str
    restored_version_id: str | None
    current_version_id: str | None
    skipped: str | None = None


def read_manifest(s3: Any, bucket: str, key: str) -> tuple[dict[str, Any], str | None, str] | None:
    """(manifest, version id, sha256 of body) of the current object, or None if there is none."""
    try:
        with aws_call("s3", "GetObject"):
            obj = s3.get_object(Bucket=bucket, Key=key)
    except PermanentActionError as exc:
        if exc.aws_code in {"NoSuchKey", "404"}:
            return None
        raise
    body = obj["Body"].read()
    try:
        manifest = json.loads(body)
    except ValueError:
        manifest = {}
    return (
        (manifest if isinstance(manifest, dict) else {}),
        obj.get("VersionId"),
        hashlib.sha256(body).hexdigest(),
    )


def _older(new: str, current: str) -> bool:
    try:
        return Version(new) < Version(current)
    except InvalidVersion:
        return False


def _ensure_versioning(s3: Any, bucket: str) -> None:
    with aws_call("s3", "GetBucketVersioning"):
        status = s3.get_bucket_versioning(Bucket=bucket).get("Status")
    if status != "Enabled":
        with aws_call("s3", "PutBucketVersioning"):
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def manifest_body(ctx: ActionContext, params: PublishReleaseParams) -> bytes:
    doc = {
        "schema": 1,
        "version": params.version,
        "min_supported_version": params.min_supported_version,
        "pinned": dict(sorted(params.pinned.items())),
        **({"removed": sorted(set(params.remove))} if params.remove else {}),
        "notes": params.notes,
        "incident": ctx.incident_id,
        "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode("utf-8")


def _publish(ctx: ActionContext, params: PublishReleaseParams) -> PublishReleaseResult:
    s3 = clients_for(ctx, params.account, region_of(ctx, params))("s3")
    current = read_manifest(s3, params.bucket, params.key)
    # Before-image, recorded before the write: the object version this incident found.
    before = ctx.observe(
        f"s3:{params.bucket}/{params.key}",
        {"version_id": current[1], "version": str(current[0].get("version", "")), "sha256": current[2]}
        if current is not None
        else {"version_id": None, "version": None, "sha256": None},
    )
    if current is not None:
        manifest, version_id, sha = current
        cur_version = str(manifest.get("version", ""))
        if cur_version == params.version:
            if manifest.get("incident") == ctx.incident_id and version_id != before.get("version_id"):
                return _reconcile_publish(ctx, params, before, version_id, sha)
            return PublishReleaseResult(
                bucket=params.bucket,
                key=params.key,
                version_id=version_id,
                version=params.version,
                sha256=sha,
                published=False,
            )
        if cur_version and _older(params.version, cur_version):
            raise PermanentActionError(
                f"refusing to publish {params.version} over newer release {cur_version} "
                f"at s3://{params.bucket}/{params.key}",
                operation="PutObject",
            )
    _ensure_versioning(s3, params.bucket)
    body = manifest_body(ctx, params)
    digest = hashlib.sha256(body)
    with aws_call("s3", "PutObject"):
        resp = s3.put_object(
            Bucket=params.bucket,
            Key=params.key,
            Body=body,
            ContentType="application/json",
            CacheControl="no-cache",
            ChecksumSHA256=base64.b64encode(digest.digest()).decode("ascii"),
            Metadata={"sha256": digest.hexdigest(), "stanch-incident": ctx.incident_id},
        )
    ctx.record(
        "aws.s3.release_published",
        {
            "bucket": params.bucket,
            "key": params.key,
            "version": params.version,
            "version_id": resp.get("VersionId"),
            "sha256": digest.hexdigest(),
        },
    )
    return PublishReleaseResult(
        bucket=params.bucket,
        key=params.key,
        version_id=resp.get("VersionId"),
        version=params.version,
        sha256=digest.hexdigest(),
        previous_version_id=current[1] if current else None,
    )


def _reconcile_publish(ctx: ActionContext, params: PublishReleaseParams, before: dict[str, Any],
                       version_id: str | None, sha: str) -> PublishReleaseResult:
    """The manifest announcing ``version`` was written by this incident after the before-image:
    an earlier attempt published it and crashed before recording it. Never write it again;
    record it once and report it as published, so the compensation restores the prior version."""
    ctx.record_once(
        "aws.s3.release_published",
        {"bucket": params.bucket, "key": params.key, "version": params.version, "version_id": version_id,
         "sha256": sha, "reconciled": True},
        match=("bucket", "key", "version_id"),
    )
    return PublishReleaseResult(
        bucket=params.bucket,
        key=params.key,
        version_id=version_id,
        version=params.version,
        sha256=sha,
        previous_version_id=before.get("version_id"),
    )


def _describe_publish(ctx: ActionContext, params: PublishReleaseParams) -> list[PlannedOperation]:
    s3 = clients_for(ctx, params.account, region_of(ctx, params))("s3")
    current = read_manifest(s3, params.bucket, params.key)
    cur = str(current[0].get("version", "?")) if current else None
    if cur == params.version:
        note = f"nothing to do: manifest already announces {params.version}"
    else:
        note = f"{cur or 'no manifest'} -> {params.version} (min supported {params.min_supported_version})"
    return _plan_publish(params, note)


def _plan_publish(params: PublishReleaseParams, note: str) -> list[PlannedOperation]:
    return [
        PlannedOperation(
            service="s3",
            operation="PutObject",
            account=params.account,
            region=params.region,
            resources=[f"s3://{params.bucket}/{params.key}"],
            note=note,
        )
    ]


def _restore(ctx: ActionContext, params: RestoreReleaseParams) -> RestoreReleaseResult:
    s3 = clients_for(ctx, params.account, region_of(ctx, params))("s3")
    current = read_manifest(s3, params.bucket, params.key)
    current_id = current[1] if current else None
    if params.expected_version_id and current_id != params.expected_version_id:
        return RestoreReleaseResult(
            bucket=params.bucket,
            key=params.key,
            restored_version_id=None,
            current_version_id=current_id,
            skipped=f"current version {current_id} is not the one we published "
            f"({params.expected_version_id})",
        )
    if params.version_id is None:
        with aws_call("s3", "DeleteObject"):
            s3.delete_object(Bucket=params.bucket, Key=params.key)
        return RestoreReleaseResult(
            bucket=params.bucket, key=params.key, restored_version_id=None, current_version_id=None
        )
    with aws_call("s3", "CopyObject"):
        resp = s3.copy_object(
            Bucket=params.bucket,
            Key=params.key,
            CopySource={"Bucket": params.bucket, "Key": params.key, "VersionId": params.version_id},
        )
    return RestoreReleaseResult(
        bucket=params.bucket,
        key=params.key,
        restored_version_id=params.version_id,
        current_version_id=resp.get("VersionId"),
    )


def _describe_restore(ctx: ActionContext, params: RestoreReleaseParams) -> list[PlannedOperation]:
    op = "CopyObject" if params.version_id else "DeleteObject"
    return [
        PlannedOperation(
            service="s3",
            operation=op,
            account=params.account,
            region=params.region,
            resources=[f"s3://{params.bucket}/{params.key}"],
            note=f"make version {params.version_id} current again"
            if params.version_id
            else "remove manifest",
        )
    ]


def _compensation_params(params: PublishReleaseParams, result: PublishReleaseResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "account": params.account,
        "bucket": params.bucket,
        "key": params.key,
        "version_id": result.previous_version_id,
        "expected_version_id": result.version_id,
    }
    if params.region:
        out["region"] = params.region
    if not result.published:
        # We did not change anything: restoring must be a no-op.
        out["expected_version_id"] = "stanch:not-published"
    return out


PUBLISH: ActionSpec[PublishReleaseParams, PublishReleaseResult] = ActionSpec(
    name="aws.s3.publish_release",
    summary="Write a release manifest (version, minimum supported version, dependency pins) to S3.",
    params=PublishReleaseParams,
    result=PublishReleaseResult,
    run=_publish,
    mutating=True,
    idempotent=True,
    describe=safe_describe(_describe_publish, lambda ctx, p: _plan_publish(p, f"-> {p.version}")),
    compensation="aws.s3.restore_release",
    compensation_params=_compensation_params,
)

RESTORE: ActionSpec[RestoreReleaseParams, RestoreReleaseResult] = ActionSpec(
    name="aws.s3.restore_release",
    summary="Make a previous release manifest version current again (undo of publish_release).",
    params=RestoreReleaseParams,
    result=RestoreReleaseResult,
    run=_restore,
    mutating=True,
    idempotent=True,
    describe=_describe_restore,
)
