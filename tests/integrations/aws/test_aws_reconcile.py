"""Effects applied but not recorded: an action re-run after a crash between its AWS call and its
record reconciles against the before-image it recorded first (``ActionContext.observe``).

The crash is made real: the first attempt's ``record`` of the effect raises (the process "dies"
there, after AWS applied the change), or a fault stops it right after the applied call. A
``Journal`` plays the engine's timeline across attempts (what ``ActionContext.history`` reads)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from integrations.aws import acm, certs, iam, s3
from integrations.aws.session import clients_for
from integrations.base import OBSERVED, ActionContext
from integrations.errors import PermanentActionError
from integrations.sandbox.faults import inject_fault
from integrations.sandbox.fleet import SandboxFleet
from integrations.sandbox.observe import access_key_statuses, certificate_facts, release_manifest
from integrations.settings import StanchSettings

ACCOUNT = "222222222222"


class Crash(BaseException):
    """The process dying at a given record (BaseException: nothing in the action catches it)."""


class Journal:
    """One step item's timeline across attempts."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def ctx(self, settings: StanchSettings, *, crash_at: str | None = None, step: str = "step") -> ActionContext:
        def record(kind: str, data: dict[str, Any]) -> None:
            if kind == crash_at:
                raise Crash(kind)
            self.events.append((kind, json.loads(json.dumps(data, default=str))))

        return ActionContext(incident_id="INC-RECON", step_id=step, settings=settings, record=record,
                             history=lambda kind: [d for k, d in self.events if k == kind])

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [d for k, d in self.events if k == kind]


def test_observe_records_the_first_state_once(aws_settings: StanchSettings) -> None:
    j = Journal()
    assert j.ctx(aws_settings).observe("x", {"v": 1}) == {"v": 1}
    assert j.ctx(aws_settings).observe("x", {"v": 2}) == {"v": 1}  # a later attempt gets the first
    assert j.kinds(OBSERVED) == [{"subject": "x", "state": {"v": 1}}]
    assert j.ctx(aws_settings).record_once("k", {"a": 1, "b": 2}, match=("a",))
    assert not j.ctx(aws_settings).record_once("k", {"a": 1, "b": 3}, match=("a",))
    assert len(j.kinds("k")) == 1


def test_key_deactivated_before_a_crash_is_ours_not_already_inactive(aws_settings: StanchSettings) -> None:
    cli = clients_for(aws_settings, ACCOUNT)("iam")
    cli.create_user(UserName="ci-app")
    k1 = cli.create_access_key(UserName="ci-app")["AccessKey"]["AccessKeyId"]
    k2 = cli.create_access_key(UserName="ci-app")["AccessKey"]["AccessKeyId"]
    cli.create_user(UserName="ci-other")
    k_off = cli.create_access_key(UserName="ci-other")["AccessKey"]["AccessKeyId"]
    cli.update_access_key(UserName="ci-other", AccessKeyId=k_off, Status="Inactive")  # before the incident
    j = Journal()
    with pytest.raises(Crash):  # dies right after AWS switched the first key off
        iam.DEACTIVATE.execute(j.ctx(aws_settings, crash_at="aws.iam.access_key_deactivated"),
                               {"account": ACCOUNT, "user": "ci-app"})
    ep = aws_settings.aws_endpoint_url or ""
    assert sorted(access_key_statuses(ep, ACCOUNT, "ci-app").values()) == ["Active", "Inactive"]

    again = iam.DEACTIVATE.execute(j.ctx(aws_settings), {"account": ACCOUNT, "user": "ci-app"})
    assert sorted(again.deactivated) == sorted([k1, k2]) and again.already_inactive == []
    assert sorted(d["access_key_id"] for d in j.kinds("aws.iam.access_key_deactivated")) == sorted([k1, k2])
    comp = iam.DEACTIVATE.compensation_params  # the compensation reactivates both
    assert comp is not None
    assert sorted(comp(iam.DeactivateKeysParams(account=ACCOUNT, user="ci-app"), again)["key_ids"]) == \
        sorted([k1, k2])
    # a third attempt changes and records nothing more
    third = iam.DEACTIVATE.execute(j.ctx(aws_settings), {"account": ACCOUNT, "user": "ci-app"})
    assert sorted(third.deactivated) == sorted([k1, k2]) and len(j.kinds("aws.iam.access_key_deactivated")) == 2
    # a key Inactive before the incident stays "already inactive" (and out of the compensation)
    other = iam.DEACTIVATE.execute(Journal().ctx(aws_settings), {"account": ACCOUNT, "user": "ci-other"})
    assert other.deactivated == [] and other.already_inactive == [k_off]


def test_certificate_imported_before_a_crash_gets_its_tags_and_event(
        fleet: SandboxFleet, aws_settings: StanchSettings) -> None:
    svc = fleet.service("desktop-app")
    arn = svc.certificate_arn or ""
    params = {"account": ACCOUNT, "certificate_arn": arn, "secret_name": svc.signing_secret,
              "ca_secret": fleet.ca_secret}
    ep = fleet.endpoint_url
    before = certificate_facts(ep, ACCOUNT, arn)
    # the import lands, then the process is gone before it tags the certificate or records it
    inject_fault(ep, "AddTagsToCertificate", status=400, code="ValidationException", count=1)
    j = Journal()
    with pytest.raises(PermanentActionError):
        acm.ROTATE.execute(j.ctx(aws_settings), params)
    imported = certificate_facts(ep, ACCOUNT, arn)
    assert imported["serial"] != before["serial"] and j.kinds("aws.acm.certificate_rotated") == []

    result = acm.ROTATE.execute(j.ctx(aws_settings), params)
    assert certificate_facts(ep, ACCOUNT, arn)["serial"] == imported["serial"] == result.new_serial  # not re-imported
    assert result.old_serial == before["serial"]
    acm_cli = clients_for(aws_settings, ACCOUNT)("acm")
    tags = {t["Key"]: t["Value"] for t in acm_cli.list_tags_for_certificate(CertificateArn=arn)["Tags"]}
    assert tags["stanch:incident"] == "INC-RECON" and tags["stanch:previous-serial"] == before["serial"]
    assert tags["stanch:rotation-token"] == result.secret_version_id
    events = j.kinds("aws.acm.certificate_rotated")
    assert len(events) == 1 and events[0]["old_serial"] == before["serial"]
    assert events[0]["new_serial"] == imported["serial"]
    acm.ROTATE.execute(j.ctx(aws_settings), params)  # once more: nothing new
    assert len(j.kinds("aws.acm.certificate_rotated")) == 1
    assert "PRIVATE KEY" not in json.dumps(j.events)
    key_pem = clients_for(aws_settings, ACCOUNT)("secretsmanager").get_secret_value(
        SecretId=svc.signing_secret, VersionStage="AWSCURRENT")["SecretString"]  # (moto: by stage, see observe)
    assert certs.public_key_der(certs.load_key(key_pem)) == imported["public_key_der"]


def test_manifest_written_before_a_crash_is_published_once_and_restorable(
        fleet: SandboxFleet, aws_settings: StanchSettings) -> None:
    ep = fleet.endpoint_url
    bucket, key = "desktop-app-releases", "release/latest.json"
    original = release_manifest(ep, ACCOUNT, bucket, key)
    params = {"account": ACCOUNT, "bucket": bucket, "key": key, "version": "9.9.9",
              "min_supported_version": "9.9.9"}
    j = Journal()
    with pytest.raises(Crash):
        s3.PUBLISH.execute(j.ctx(aws_settings, crash_at="aws.s3.release_published"), params)
    s3_cli = clients_for(aws_settings, ACCOUNT)("s3")
    count = len(s3_cli.list_object_versions(Bucket=bucket, Prefix=key)["Versions"])

    result = s3.PUBLISH.execute(j.ctx(aws_settings), params)
    assert result.published and result.previous_version_id == original["_version_id"]
    assert len(s3_cli.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]) == count  # written once
    assert [e["version_id"] for e in j.kinds("aws.s3.release_published")] == [result.version_id]
    # the compensation built from it puts the original manifest back
    comp = s3.PUBLISH.compensation_params
    assert comp is not None
    s3.RESTORE.execute(j.ctx(aws_settings, step="undo"), comp(s3.PublishReleaseParams(**params), result))
    restored = release_manifest(ep, ACCOUNT, bucket, key)
    assert restored["version"] == original["version"] == "4.2.0"
    # a manifest with this version that another incident wrote is still not ours
    other = s3.PUBLISH.execute(Journal().ctx(aws_settings), {**params, "version": "4.2.0"})
    assert not other.published
