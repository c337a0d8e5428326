"""runbooks/compromised-signing-certificate.yaml end to end on the ``signing`` sandbox fleet: a new
certificate at the same ACM ARN, the Signer profile moved and the old one cancelled, the release
manifest's minimum supported version raised, users told — and the old fingerprint in the post-mortem.
Read back from moto (ACM, Secrets Manager, Signer, S3, SES)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandboxes import seeded_sandbox
from typer.testing import CliRunner

from flows.engine.runtime import run_runbook
from flows.entrypoints.cli import app
from integrations.aws.session import clients_for
from integrations.sandbox import Sandbox, observe
from integrations.sandbox.fleet_library import SIGNING_PROFILE
from integrations.settings import StanchSettings

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "compromised-signing-certificate.yaml"
GOLDEN = Path(__file__).parent / "golden" / "plan_compromised_signing_certificate.txt"
INPUTS = {"services": ["desktop-app"], "app_version": "4.3.0"}


@pytest.fixture(scope="module")
def signing(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Iterator[Sandbox]:
    with pytest.MonkeyPatch.context() as mp:
        yield from seeded_sandbox(tmp_path_factory.mktemp("signing"), mp, fleet_variant="signing")


def _plan_golden_and_side_effect_free(signing: Sandbox) -> None:
    """`stanch plan` against the seeded fleet equals the golden file and changes nothing (one
    sandbox per module: run first, inside the end-to-end test, so xdist never splits them)."""
    result = CliRunner().invoke(app, ["plan", "compromised-signing-certificate", "--input", "services=desktop-app",
                                      "--input", "app_version=4.3.0"])
    assert result.exit_code == 0, result.output
    got = re.sub(r"certificate/[0-9a-f-]{36}", "certificate/<uuid>", result.output)
    if os.environ.get("STANCH_UPDATE_GOLDEN"):
        GOLDEN.write_text(got)
    assert got == GOLDEN.read_text()


def test_new_certificate_old_one_retired_release_raised_users_told(signing: Sandbox, tmp_path: Path) -> None:
    _plan_golden_and_side_effect_free(signing)
    fleet = signing.fleet
    assert fleet is not None
    desk = fleet.services["desktop-app"]
    assert desk.certificate_arn and desk.release_bucket and desk.signing_secret
    before = observe.certificate_facts(signing.url, desk.account, desk.certificate_arn)
    old_key = observe.secret_value(signing.url, desk.account, desk.signing_secret)

    state = run_runbook(str(RUNBOOK), INPUTS, "INC-SIGN-1", str(tmp_path / "store"), True, "test", return_state=True)
    assert state.is_completed(), state.message  # type: ignore[attr-defined]
    folder = tmp_path / "store" / "INC-SIGN-1"

    after = observe.certificate_facts(signing.url, desk.account, desk.certificate_arn)
    assert after["fingerprint_sha256"] != before["fingerprint_sha256"]
    assert after["public_key_der"] != before["public_key_der"]
    new_key = observe.secret_value(signing.url, desk.account, desk.signing_secret)
    assert new_key["version_id"] != old_key["version_id"]

    signer = clients_for(StanchSettings(aws_endpoint_url=signing.url), desk.account, "us-east-1")("signer")
    assert signer.get_signing_profile(profileName=SIGNING_PROFILE)["status"] == "Canceled"
    events = [json.loads(x) for x in (folder / "timeline.jsonl").open()]
    skipped = {e["step"]: e["data"]["reason"] for e in events if e["kind"] == "step.skipped"}
    assert skipped == {"containment-failed": "the run has not failed (when: on_failure)"}
    moved = next(e["data"]["output"] for e in events
                 if e["kind"] == "item.succeeded" and e["step"] == "retire-signing-profile")
    new_profile = signer.get_signing_profile(profileName=moved["new_profile_name"])
    assert new_profile["status"] == "Active"
    assert new_profile["signingMaterial"]["certificateArn"] == desk.certificate_arn

    manifest = observe.release_manifest(signing.url, desk.account, desk.release_bucket)
    assert (manifest["version"], manifest["min_supported_version"]) == ("4.3.0", "4.3.0")
    assert after["fingerprint_sha256"] in manifest["notes"]

    sent = observe.sent_emails(signing.url)
    assert sorted(t for m in sent for t in m.to) == sorted(fleet.audiences["desktop-users"].emails)
    # only desktop-app was named: the web dashboard's users hear nothing
    assert not {t for m in sent for t in m.to} & set(fleet.audiences["web-users"].emails)

    pm = (folder / "postmortem.md").read_text()
    assert before["fingerprint_sha256"] in pm and after["fingerprint_sha256"] in pm
    assert "## Retired certificates" in pm and f"{SIGNING_PROFILE} → {SIGNING_PROFILE}_" in pm
    everything = "".join(p.read_text() for p in folder.rglob("*") if p.is_file())
    assert "PRIVATE KEY-----" not in everything
