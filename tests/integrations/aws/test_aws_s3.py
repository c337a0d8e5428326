"""aws.s3.publish_release / restore_release against the seeded release bucket."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from integrations.aws import s3
from integrations.aws.session import clients_for
from integrations.base import ActionContext
from integrations.errors import PermanentActionError, TransientActionError
from integrations.sandbox.faults import inject_fault
from integrations.sandbox.fleet import SandboxFleet
from integrations.sandbox.observe import release_manifest

ACCOUNT = "222222222222"
BUCKET = "desktop-app-releases"


def _params(**over: Any) -> dict[str, Any]:
    return {
        "account": ACCOUNT,
        "region": "us-east-1",
        "bucket": BUCKET,
        "key": "release/latest.json",
        "version": "4.2.1",
        "min_supported_version": "4.2.1",
        "pinned": {"axios": "1.14.0"},
        "notes": "Pins axios 1.14.0 (MAL-2026-2307).",
        **over,
    }


def test_publish_writes_manifest(fleet: SandboxFleet, make_ctx: Callable[..., ActionContext]) -> None:
    old = release_manifest(fleet.endpoint_url, ACCOUNT, BUCKET)
    result = s3.PUBLISH.execute(make_ctx(), _params())
    doc = release_manifest(fleet.endpoint_url, ACCOUNT, BUCKET)
    assert doc["version"] == "4.2.1" and doc["min_supported_version"] == "4.2.1"
    assert doc["pinned"] == {"axios": "1.14.0"} and doc["incident"] == "INC-42"
    assert result.sha256 == doc["_sha256"] and result.version_id == doc["_version_id"]
    assert result.previous_version_id == old["_version_id"] and result.published
    obj = clients_for(make_ctx().settings, ACCOUNT)("s3").get_object(Bucket=BUCKET, Key="release/latest.json")
    assert hashlib.sha256(obj["Body"].read()).hexdigest() == obj["Metadata"]["sha256"] == result.sha256


def test_publish_is_idempotent(fleet: SandboxFleet, make_ctx: Callable[..., ActionContext]) -> None:
    first = s3.PUBLISH.execute(make_ctx(), _params())
    again = s3.PUBLISH.execute(make_ctx(), _params())
    assert not again.published
    assert (again.version_id, again.sha256) == (first.version_id, first.sha256)


def test_refuses_downgrade_and_missing_bucket(
    fleet: SandboxFleet, make_ctx: Callable[..., ActionContext]
) -> None:
    with pytest.raises(PermanentActionError, match=r"refusing to publish 4\.1\.9"):
        s3.PUBLISH.execute(make_ctx(), _params(version="4.1.9"))
    with pytest.raises(PermanentActionError) as err:
        s3.PUBLISH.execute(make_ctx(), _params(bucket="no-such-bucket"))
    assert err.value.aws_code == "NoSuchBucket" and err.value.operation == "GetObject"


def test_transient_put_then_success(fleet: SandboxFleet, make_ctx: Callable[..., ActionContext]) -> None:
    inject_fault(fleet.endpoint_url, "PutObject", service="s3", status=503, code="SlowDown", count=1)
    with pytest.raises(TransientActionError) as err:
        s3.PUBLISH.execute(make_ctx(), _params())
    assert err.value.operation == "PutObject" and err.value.aws_code == "SlowDown"
    assert release_manifest(fleet.endpoint_url, ACCOUNT, BUCKET)["version"] == "4.2.0"
    assert s3.PUBLISH.execute(make_ctx(), _params()).published


def test_compensation_restores_previous_manifest(
    fleet: SandboxFleet, make_ctx: Callable[..., ActionContext]
) -> None:
    params = s3.PublishReleaseParams.model_validate(_params())
    result = s3.PUBLISH.run(make_ctx(), params)
    assert s3.PUBLISH.compensation == s3.RESTORE.name and s3.PUBLISH.compensation_params is not None
    undo = s3.PUBLISH.compensation_params(params, result)
    restored = s3.RESTORE.execute(make_ctx(), undo)
    assert restored.restored_version_id == result.previous_version_id
    assert release_manifest(fleet.endpoint_url, ACCOUNT, BUCKET)["version"] == "4.2.0"
    # running the compensation again changes nothing
    assert s3.RESTORE.execute(make_ctx(), undo).skipped
