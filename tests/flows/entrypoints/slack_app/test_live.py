"""The Slack app end to end: a signed ``/stanch run`` starts the flagship runbook in-process
against the sandbox (moto + Slack stand-in), thread updates land in the stand-in, the run
completes; a Slack outage does not stop containment; approvals by button."""

from __future__ import annotations

import json
import time
from pathlib import Path

from slack_harness import SlackHarness, sign

from flows.engine.timeline import read_events, verify
from flows.entrypoints.demo import DEMO_INPUTS
from flows.entrypoints.slack.launchers import InProcessLauncher


def _run_text(h: SlackHarness) -> str:
    inventory = Path(h.store).parent.parent / "sandbox" / "fleet" / "inventory.yaml"
    pairs = {**DEMO_INPUTS, "inventory": str(inventory)}
    return "run compromised-dependency " + " ".join(f"{k}={v}" for k, v in pairs.items())


def _wait_finished(folder: Path, timeout: float = 60.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = list(read_events(folder / "timeline.jsonl"))
        if any(e["kind"] == "run.finished" for e in events):
            return events
        time.sleep(0.1)
    raise AssertionError(f"{folder.name} did not finish in {timeout}s")


def _wait_event(folder: Path, kind: str, timeout: float = 30.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = list(read_events(folder / "timeline.jsonl"))
        hit = [e for e in events if e["kind"] == kind]
        if hit:
            return hit[-1]
        if any(e["kind"] == "run.finished" for e in events):
            raise AssertionError(f"run finished without {kind}: {[e['kind'] for e in events]}")
        time.sleep(0.1)
    raise AssertionError(f"no {kind} in {timeout}s")


def _only_incident(h: SlackHarness, timeout: float = 10.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        folders = [p for p in h.incidents() if (p / "timeline.jsonl").exists()]
        if folders:
            assert len(folders) == 1, folders
            return folders[0]
        time.sleep(0.05)
    raise AssertionError("no incident folder appeared")


def test_slash_command_runs_the_flagship_runbook_once(live: SlackHarness) -> None:
    url = live.standin.response_url()
    body = live.command_body(_run_text(live), "U0ONCALL", response_url=url)
    started = time.monotonic()
    resp = live.post(body, sign(body))
    assert resp.status == 200 and time.monotonic() - started < 3.0
    assert json.loads(resp.data)["response_type"] == "ephemeral"
    # Slack's retry of the same delivery while the run is going: acked, nothing new started
    assert live.post(body, {**sign(body), "X-Slack-Retry-Num": "1"}).status == 200

    announced = live.wait_response(url)[0]
    assert announced["response_type"] == "in_channel"
    folder = _only_incident(live)
    assert f"incident `{folder.name}`" in announced["text"]
    assert "/runs/flow-run/" in announced["text"]  # Prefect UI link (flow run id found in time)

    events = _wait_finished(folder)
    finished = next(e for e in events if e["kind"] == "run.finished")
    assert finished["data"]["outcome"] == "succeeded", [e for e in events if "failed" in str(e["kind"])]
    assert next(e for e in events if e["kind"] == "run.started")["actor"] == "slack:U0ONCALL"
    assert verify(folder / "timeline.jsonl").ok

    # the incident thread: a header (edited) and threaded per-step reports in the stand-in
    posts = live.standin.calls("chat.postMessage")
    header = [c for c in posts if not c["params"].get("thread_ts") and folder.name in json.dumps(c["params"])]
    assert header, "no incident header posted"
    threaded = [c for c in posts if c["params"].get("thread_ts")]
    assert len(threaded) >= 7
    assert live.standin.calls("chat.update")

    time.sleep(0.3)
    assert len(live.incidents()) == 1
    assert isinstance(live.launcher, InProcessLauncher) and len(live.launcher.threads) == 1
    assert len(live.standin.responses(url)) == 1

    resp, _ = live.command(f"status {folder.name}")
    text = json.loads(resp.data)["text"]
    assert "contained" in text and "`revoke-ci-keys` succeeded" in text
    resp, _ = live.command("list")
    assert json.loads(resp.data)["text"] == "No open incidents."


def test_slack_outage_does_not_stop_containment(live: SlackHarness) -> None:
    for method in ("chat.postMessage", "chat.update"):  # Retry-After beyond the client's cap: fail fast
        live.standin.inject_fault(method, count=10**6, status=429, retry_after=3600)
    resp, url = live.command(_run_text(live), "U0ONCALL")
    assert resp.status == 200
    assert live.wait_response(url)[0]["response_type"] == "in_channel"  # response_url still works
    folder = _only_incident(live)
    events = _wait_finished(folder)
    live.standin.clear_faults()
    assert next(e for e in events if e["kind"] == "run.finished")["data"]["outcome"] == "succeeded"
    assert any(e["kind"] == "slack.unavailable" for e in events)
    assert {e["step"] for e in events if e["kind"] == "step.succeeded"} >= {"revoke-ci-keys", "rotate-signing-cert"}


def test_two_security_leads_approve_by_button_and_an_outsider_is_refused(live: SlackHarness) -> None:
    resp, url = live.command("run gated", "U0ONCALL")
    assert resp.status == 200
    assert live.wait_response(url)[0]["response_type"] == "in_channel"
    folder = _only_incident(live)
    requested = _wait_event(folder, "approval.requested")
    assert requested["step"] == "approve-rotation"

    _, out_url = live.click(folder.name, "approve-rotation", "U0OUTSIDER")
    refused = live.wait_response(out_url)[0]
    assert refused["response_type"] == "ephemeral" and "not allowed to approve" in refused["text"]
    assert any(e["kind"] == "slack.refused" and e["actor"] == "slack:U0OUTSIDER"
               for e in read_events(folder / "timeline.jsonl"))

    _, url1 = live.click(folder.name, "approve-rotation", "U0LEAD1")
    assert "Recorded" in live.wait_response(url1, timeout=20)[0]["text"]
    _, url2 = live.click(folder.name, "approve-rotation", "U0LEAD2")
    assert "Recorded" in live.wait_response(url2, timeout=20)[0]["text"]

    events = _wait_finished(folder)
    assert next(e for e in events if e["kind"] == "run.finished")["data"]["outcome"] == "succeeded"
    assert any(e["kind"] == "approval.granted" for e in events)
    assert any(e["kind"] == "step.succeeded" and e["step"] == "rotate" for e in events)


NOTE = """\
name: note-only
title: One note
slack:
  channel: "#incident"
  allowed_users: [U0ONCALL]
steps:
  - id: one
    action: core.note
    with: {message: noted}
"""


def test_thread_falls_back_to_the_runbooks_channel(live: SlackHarness) -> None:
    """/stanch typed in a channel the bot cannot post to: the thread opens in the runbook's channel,
    says why there, and the timeline records slack.fallback."""
    rb = live.app._stanch.config.runbooks_dir  # type: ignore[attr-defined]
    (rb / "note-only.yaml").write_text(NOTE)
    url = live.standin.response_url()
    body = live.command_body("run note-only", "U0ONCALL", response_url=url).replace(
        "channel_id=C0INCIDENT", "channel_id=C0NOWHERE")
    assert live.post(body, sign(body)).status == 200
    assert live.wait_response(url)[0]["response_type"] == "in_channel"
    folder = _only_incident(live)
    events = _wait_finished(folder)
    fallback = next(e for e in events if e["kind"] == "slack.fallback")
    assert fallback["data"]["wanted"] == "C0NOWHERE" and "channel_not_found" in fallback["data"]["error"]
    in_incident = live.standin.messages(channel="C0INCIDENT")
    header = next(m for m in in_incident if folder.name in json.dumps(m) and not m.get("thread_ts"))
    notes = [m for m in live.standin.messages(thread_ts=header["ts"]) if "opened here because" in m["text"]]
    assert notes and "<#C0NOWHERE>" in notes[0]["text"]


def test_second_click_by_the_same_approver_is_not_counted(live: SlackHarness) -> None:
    """Two clicks by one lead: the first is recorded (1 of 2), the second says it was not counted;
    @security-leads is resolved when the click arrives, so a Slack outage while the approval was
    requested does not lock the group out."""
    with live.standin.outage("usergroups.list"):
        resp, url = live.command("run gated", "U0ONCALL")
        assert resp.status == 200 and live.wait_response(url)[0]["response_type"] == "in_channel"
        folder = _only_incident(live)
        _wait_event(folder, "approval.requested")
        time.sleep(0.5)
    _, url1 = live.click(folder.name, "approve-rotation", "U0LEAD1")
    first = live.wait_response(url1, timeout=30)[0]["text"]
    assert first.startswith("Recorded: you approved") and "(1 of 2)" in first, first
    _, url2 = live.click(folder.name, "approve-rotation", "U0LEAD1")
    second = live.wait_response(url2, timeout=30)[0]["text"]
    assert "Not counted" in second and "already approved" in second, second
    _, url3 = live.click(folder.name, "approve-rotation", "U0LEAD2")
    assert "(2 of 2)" in live.wait_response(url3, timeout=30)[0]["text"]
    events = _wait_finished(folder)
    assert next(e for e in events if e["kind"] == "run.finished")["data"]["outcome"] == "succeeded"
    granted = next(e for e in events if e["kind"] == "approval.granted")
    assert granted["data"]["approved_by"] == ["slack:U0LEAD1", "slack:U0LEAD2"]
