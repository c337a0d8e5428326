"""when-steps and on_deny through real Prefect flows, read back from the Slack stand-in: a gate
that expires (= denied) with ``on_deny: skip`` is declined and its dependents skipped; a failing
step triggers the ``when: on_failure`` step, which posts the run's outcome to #security; a
``when: always`` step posts in both runs; the approval message is rendered, not posted literally."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows.engine import secret_inputs
from flows.engine.checkpoints import key_id, verify_record
from flows.engine.runtime import run_runbook
from flows.engine.timeline import verify
from integrations.sandbox.slack_standin import SlackStandIn

RUNBOOK = Path(__file__).parent / "when_deny.yaml"
SECRET = "tkt-s3cr3t-4f9a2c"
pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture(scope="module")
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn() as standin:
        yield standin


def _run(slack: SlackStandIn, store: Path, incident: str, fail: bool, monkeypatch: pytest.MonkeyPatch
         ) -> tuple[Any, list[dict[str, Any]]]:
    monkeypatch.setenv("STANCH_SLACK_BASE_URL", slack.api_url)
    monkeypatch.setenv("STANCH_SLACK_TOKEN", slack.token)
    monkeypatch.setenv("STANCH_SLACK_CHANNEL", "#incident")
    secret_inputs.deposit(incident, {"ticket": SECRET})
    try:
        state = run_runbook(str(RUNBOOK), {"user": "alice", "fail_containment": str(fail).lower(),
                                           "ticket": {"$secret_ref": "ticket"}}, incident,
                            str(store), False, "cli:U0ONCALL", return_state=True)
    finally:
        secret_inputs.discard(incident)
    folder = store / incident
    assert verify(folder / "timeline.jsonl").ok
    return state, [json.loads(x) for x in (folder / "timeline.jsonl").open()]


def _texts(slack: SlackStandIn, channel: str, incident: str) -> list[str]:
    return [m["text"] for m in slack.messages(channel) if incident in json.dumps(m)]


@pytest.mark.timeout(120)
def test_declined_gate_and_when_steps_against_the_slack_standin(
        slack: SlackStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 1. containment fails: on_failure tells #security, with the failed and declined steps
    state, events = _run(slack, tmp_path, "INC-WHEN-FAIL", True, monkeypatch)
    assert state.is_failed()
    status = {e["step"]: e["kind"] for e in events if e["kind"].startswith("step.") and e["kind"] != "step.started"}
    assert status == {"gate": "step.skipped", "disable": "step.skipped", "contain": "step.failed",
                      "tell-security": "step.succeeded", "summary": "step.succeeded"}
    kinds = [e["kind"] for e in events]
    assert kinds.index("step.failed") < kinds.index("run.finished")
    security = _texts(slack, "C0SECURITY", "INC-WHEN-FAIL")
    assert "INC-WHEN-FAIL failed: failed contain; declined gate; contain failed" in security
    assert "summary INC-WHEN-FAIL: failed" in security
    # the approval request was rendered (never the literal template) and said what a denial does
    asked = [m for m in slack.messages("C0INCIDENT") if "Approval needed" in json.dumps(m)]
    shown = json.dumps(asked)
    assert "Disable alice in when-deny? ([redacted])" in shown and "{{" not in shown
    assert SECRET not in json.dumps(slack.calls()) and SECRET not in (tmp_path / "INC-WHEN-FAIL" /
                                                                      "timeline.jsonl").read_text()
    assert "skipped" in shown
    requested = next(e for e in events if e["kind"] == "approval.requested")
    assert requested["data"]["message"] == "Disable alice in when-deny? ([redacted])"

    # 2. containment succeeds: the declined gate does not fail the incident; on_failure is skipped.
    # This run signs its checkpoints (STANCH_TIMELINE_KEY outside the store) and publishes them.
    key = Ed25519PrivateKey.generate()
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "timeline.key").write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8,
                                                                       NoEncryption()))
    monkeypatch.setenv("STANCH_TIMELINE_KEY", str(tmp_path / "keys" / "timeline.key"))
    state, events = _run(slack, tmp_path, "INC-WHEN-OK", False, monkeypatch)
    assert state.is_completed(), state.message
    summary = state.result()
    assert summary["outcome"] == "succeeded" and summary["declined_steps"] == ["gate"]
    assert "declined: gate" in state.message
    skipped = {e["step"]: e["data"]["reason"] for e in events if e["kind"] == "step.skipped"}
    assert set(skipped) == {"gate", "disable", "contain", "tell-security"}
    assert "on_deny: skip" in skipped["gate"]
    assert skipped["tell-security"] == "the run has not failed (when: on_failure)"
    finished = next(e for e in events if e["kind"] == "run.finished")
    assert finished["data"]["declined_steps"] == ["gate"]
    assert _texts(slack, "C0SECURITY", "INC-WHEN-OK") == ["summary INC-WHEN-OK: succeeded"]
    header = [m for m in slack.messages("C0INCIDENT") if not m.get("thread_ts") and "INC-WHEN-OK" in json.dumps(m)]
    assert len(header) == 1 and "declined: gate" in json.dumps(header[0]), header
    assert "/runs/flow-run/" in json.dumps(header[0]) and "|Prefect run>" in json.dumps(header[0])

    # signed checkpoints: one per step and one at the end, the last event of the record
    signed = verify_record(tmp_path / "INC-WHEN-OK" / "timeline.jsonl", {key_id(key.public_key()): key.public_key()})
    assert signed.ok and signed.signed and signed.checkpoints == 6, signed
    labels = [e["data"]["label"] for e in events if e["kind"] == "checkpoint.signed"]
    assert labels == ["step gate", "step contain", "step disable", "step tell-security", "step summary", "end"]
    assert events[-1]["kind"] == "checkpoint.signed"
    # witnesses outside the store: each checkpoint in the incident's Slack thread and in Prefect
    thread = json.dumps(slack.messages("C0INCIDENT"))
    for e in events:
        if e["kind"] == "checkpoint.signed":
            assert f"checkpoint {e['data']['label']}: seq {e['seq']} sha256 {e['hash']}" in thread
    with get_client(sync_client=True) as client:
        history = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["inc-when-ok-checkpoints"])))
    shown = json.dumps([a.data for a in history])
    assert all(f"sha256 {e['hash']}" in shown for e in events if e["kind"] == "checkpoint.signed"), shown


@pytest.mark.timeout(120)
def test_a_declined_gate_stands_when_the_incident_is_resumed(
        slack: SlackStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate expired (declined, on_deny: skip) and containment failed; the cause is fixed and the
    incident resumed: the decision is not asked again — no second request in the timeline or in
    Slack — the gate stays declined, and what needs it stays skipped."""
    incident = "INC-WHEN-RESUME"
    state, _ = _run(slack, tmp_path, incident, True, monkeypatch)
    assert state.is_failed()
    asked_before = [m for m in slack.messages("C0INCIDENT") if "Approval needed" in json.dumps(m)
                    and incident in json.dumps(m)]
    secret_inputs.deposit(incident, {"ticket": SECRET})
    try:
        state = run_runbook(str(RUNBOOK), {"user": "alice", "fail_containment": "false",
                                           "ticket": {"$secret_ref": "ticket"}}, incident,
                            str(tmp_path), False, "cli:U0ONCALL", resume=True, return_state=True)
    finally:
        secret_inputs.discard(incident)
    assert state.is_completed(), state.message
    events = [json.loads(x) for x in (tmp_path / incident / "timeline.jsonl").open()]
    assert [e["kind"] for e in events].count("approval.requested") == 1  # asked once, in the first attempt
    after = events[max(i for i, e in enumerate(events) if e["kind"] == "run.resumed"):]
    skipped = {e["step"]: e["data"]["reason"] for e in after if e["kind"] == "step.skipped"}
    assert skipped["gate"].startswith("declined in an earlier attempt: approval declined")
    assert skipped["disable"] == "needed step 'gate' was skipped"
    assert state.result()["declined_steps"] == ["gate"]
    asked_after = [m for m in slack.messages("C0INCIDENT") if "Approval needed" in json.dumps(m)
                   and incident in json.dumps(m)]
    assert len(asked_after) == len(asked_before) == 1  # and nobody was paged again
