"""A crash inside each side-effect window — after AWS applied the change, before (``after``) and
after (``answered``) the response reached stanch — then ``stanch resume`` and ``stanch rollback``:
every change this incident made is recorded once and undone by the rollback; nothing was applied
twice.

Read back from moto: key statuses, the certificate at the ARN and its tags, the manifest's object
versions. Kill points come from ``tests/e2e/killpoints.py`` (``integrations.sandbox.killpoints``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from killpoints import ENV_FLAG, KillPoint, When, events, run_until_killed, stanch, stanch_env

from flows.engine.timeline import verify
from integrations.aws.session import clients_for
from integrations.sandbox import Sandbox, observe
from integrations.sandbox.fleet import CA_SECRET
from integrations.settings import StanchSettings

HERE = Path(__file__).parent
ACCOUNT = "222222222222"
BUCKET, KEY = "desktop-app-releases", "release/latest.json"
SECRET = "desktop-app/signing-key"


@pytest.mark.timeout(900)
# after: applied, killed before the response returns; answered: killed once the response was sent
@pytest.mark.parametrize("when", ["after", "answered"])
def test_kill_inside_each_side_effect_window_then_resume_and_rollback(
        sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: When) -> None:
    monkeypatch.setenv(ENV_FLAG, "1")
    assert sandbox.fleet is not None
    url = sandbox.url
    clients = clients_for(StanchSettings(aws_endpoint_url=url), ACCOUNT)
    iam, acm, s3 = clients("iam"), clients("acm"), clients("s3")
    # ci-extra: one key Inactive before the incident (must stay so), one Active.
    iam.create_user(UserName="ci-extra")
    k_off = iam.create_access_key(UserName="ci-extra")["AccessKey"]["AccessKeyId"]
    k_on = iam.create_access_key(UserName="ci-extra")["AccessKey"]["AccessKeyId"]
    iam.update_access_key(UserName="ci-extra", AccessKeyId=k_off, Status="Inactive")
    desk = sandbox.fleet.services["desktop-app"]
    arn = desk.certificate_arn
    assert arn is not None
    cert_before = observe.certificate_facts(url, ACCOUNT, arn)
    manifest_before = observe.release_manifest(url, ACCOUNT, BUCKET, KEY)
    active_before = {u: observe.access_key_statuses(url, ACCOUNT, u) for u in ("ci-extra", desk.ci_user)}

    home = tmp_path / "home"
    env = stanch_env(home)
    inc = "INC-KILL"
    folder = home / "incidents" / inc
    inputs = {"account": ACCOUNT, "users": json.dumps(["ci-extra", desk.ci_user]), "certificate_arn": arn,
              "secret_name": SECRET, "ca_secret_name": CA_SECRET, "bucket": BUCKET}
    args = [a for k, v in inputs.items() for a in ("-i", f"{k}={v}")]

    # 1. killed right at the first key deactivation (ci-extra's Active key) …
    run_until_killed(["run", str(HERE / "killpoints.yaml"), "--incident-id", inc, *args], env, url,
                     KillPoint("UpdateAccessKey", when))
    assert observe.access_key_statuses(url, ACCOUNT, "ci-extra")[k_on] == "Inactive"  # applied
    # 2. … resumed and killed at the certificate import …
    run_until_killed(["resume", inc], env, url, KillPoint("ImportCertificate", when))
    assert observe.certificate_facts(url, ACCOUNT, arn)["serial"] != cert_before["serial"]  # applied
    # 3. … resumed and killed at the manifest write …
    run_until_killed(["resume", inc], env, url, KillPoint("PutObject", when, service="s3"))
    assert observe.release_manifest(url, ACCOUNT, BUCKET, KEY)["version"] == "9.9.9"  # applied
    # 4. … resumed to the end.
    done = stanch(["resume", inc], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert verify(folder / "timeline.jsonl").ok

    # Keys: every key the incident switched off is reported and recorded exactly once.
    revoke = next(e for e in events(folder, "step.succeeded") if e["step"] == "revoke")
    items = revoke["data"]["output"]["items"]
    assert items["ci-extra"]["deactivated"] == [k_on] and items["ci-extra"]["already_inactive"] == [k_off]
    assert sorted(items[desk.ci_user]["deactivated"]) == sorted(desk.access_key_ids)
    recorded = [e["data"]["access_key_id"] for e in events(folder, "aws.iam.access_key_deactivated")]
    assert sorted(recorded) == sorted([k_on, *desk.access_key_ids])  # 0 unrecorded, 0 twice
    comp_keys = sorted(k for rec in revoke["data"]["compensation"] for k in rec["with"]["key_ids"])
    assert comp_keys == sorted([k_on, *desk.access_key_ids])  # complete compensation

    # Certificate: rotated once, tagged for the audit, its event recorded once with the old serial.
    cert_after = observe.certificate_facts(url, ACCOUNT, arn)
    tags = {t["Key"]: t["Value"] for t in acm.list_tags_for_certificate(CertificateArn=arn)["Tags"]}
    assert tags["stanch:incident"] == inc and tags["stanch:previous-serial"] == cert_before["serial"]
    assert "stanch:rotation-token" in tags
    rotated = events(folder, "aws.acm.certificate_rotated")
    assert len(rotated) == 1, rotated
    assert rotated[0]["data"]["old_serial"] == cert_before["serial"]
    assert rotated[0]["data"]["new_serial"] == cert_after["serial"]
    key = observe.secret_value(url, ACCOUNT, SECRET)["value"]  # the key at the ARN is the one stored
    from integrations.aws import certs
    assert certs.public_key_der(certs.load_key(key)) == cert_after["public_key_der"]

    # Manifest: written once by this incident, recorded once.
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=KEY)["Versions"]
    ours = [v for v in versions
            if json.loads(s3.get_object(Bucket=BUCKET, Key=KEY, VersionId=v["VersionId"])["Body"].read())
            .get("incident") == inc]
    assert len(ours) == 1, versions
    published = events(folder, "aws.s3.release_published")
    assert [e["data"]["version_id"] for e in published] == [ours[0]["VersionId"]]

    # 5. Rollback: every key the incident deactivated is Active again, the pre-incident Inactive
    # key stays Inactive, the manifest is the one from before; the certificate is not undone and
    # the output says so.
    back = stanch(["rollback", inc], env)
    assert back.returncode == 0, back.stdout + back.stderr
    assert "partly rolled back" in back.stdout and "not undone: rotate: no compensation declared" in back.stdout
    for user, statuses in active_before.items():
        assert observe.access_key_statuses(url, ACCOUNT, user) == statuses
    manifest_after = observe.release_manifest(url, ACCOUNT, BUCKET, KEY)
    assert {k: v for k, v in manifest_after.items() if k != "_version_id"} == \
        {k: v for k, v in manifest_before.items() if k != "_version_id"}
    assert verify(folder / "timeline.jsonl").ok
