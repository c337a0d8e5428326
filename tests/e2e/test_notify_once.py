"""Exactly-once notifications across SIGKILLs inside the send windows (issue 8): a run is killed
before and after an SES send and a Slack post returns (kill points on moto and the Slack stand-in),
resumed, then rolled back; the world — moto's recorded e-mails and the stand-in's messages — shows
each notification at most once (e-mail, at-most-once policy) or exactly once (Slack), one incident
header in its final state, and one report per step in the thread."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from killpoints import ENV_FLAG, CrashHarness, form_value

from flows.engine.timeline import verify
from integrations.aws.session import clients_for
from integrations.sandbox import Sandbox
from integrations.sandbox.observe import sent_emails
from integrations.settings import StanchSettings

HERE = Path(__file__).parent
ACCOUNT = "555555555501"
SENDER = "security@vendor.example"
USERS = ["ann@users.example", "bob@users.example", "cat@users.example"]
ANNOUNCE = "Containment under way"


@pytest.fixture
def killpoints_enabled(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(ENV_FLAG, "1")
    yield


def _harness(sandbox: Sandbox, tmp_path: Path, incident: str) -> tuple[CrashHarness, list[str]]:
    clients_for(StanchSettings(aws_endpoint_url=sandbox.url), ACCOUNT)("ses").verify_email_identity(
        EmailAddress=SENDER)
    run = ["run", str(HERE / "notify.yaml"), "--incident-id", incident, "--input", f"recipients={json.dumps(USERS)}",
           "--input", f"account={ACCOUNT}", "--input", f"sender={SENDER}"]
    return CrashHarness(tmp_path / "home", incident), run


def _slack_root(sandbox: Sandbox) -> str:
    return str(sandbox.slack.url)  # type: ignore[union-attr]


def _top_level(sandbox: Sandbox, channel: str) -> list[dict[str, Any]]:
    return [m for m in sandbox.slack.messages(channel) if not m.get("thread_ts")]  # type: ignore[union-attr]


def _headers(sandbox: Sandbox, incident: str) -> list[dict[str, Any]]:
    return [m for m in _top_level(sandbox, "C0INCIDENT")
            if (m.get("metadata") or {}).get("event_type") == "stanch_incident"
            and m["metadata"]["event_payload"].get("incident") == incident]


def _assert_one_final_header_and_one_report_per_step(sandbox: Sandbox, incident: str) -> None:
    headers = _headers(sandbox, incident)
    assert len(headers) == 1, [h["text"] for h in headers]
    header = headers[0]
    shown = json.dumps(header["blocks"]) + header["text"]
    assert "running" not in shown.lower() and "contained" in shown.lower(), shown
    thread = sandbox.slack.messages("C0INCIDENT", thread_ts=header["ts"])  # type: ignore[union-attr]
    reports = Counter(m["metadata"]["event_payload"]["step"] for m in thread
                      if (m.get("metadata") or {}).get("event_type") == "stanch_report"
                      and m["metadata"]["event_payload"].get("part") == 0)
    assert reports == {"announce": 1, "email-users": 1, "user-channel": 1}, reports


@pytest.mark.timeout(900)
def test_email_kill_before_and_after_send_never_emails_twice_and_lists_possibly_sent(
    sandbox: Sandbox, tmp_path: Path, killpoints_enabled: None
) -> None:
    h, run = _harness(sandbox, tmp_path, "INC-MAIL")
    slack = _slack_root(sandbox)
    # 1. header posted, killed before its record: resume must find it by metadata, not post another
    h.killed_at(run, slack, operation="chat.postMessage", when="after", match="stanch_incident")
    assert not any(e["kind"] == "slack.header" for e in h.events())
    # 2. killed as SES receives bob's e-mail (intent recorded, nothing sent)
    events = h.killed_at(["resume", "INC-MAIL"], sandbox.url, operation="SendEmail", when="before",
                         match=form_value(USERS[1]))
    assert any(e["kind"] == "intent.recorded" and e["data"].get("recipient") == USERS[1] for e in events)
    # 3. killed after SES accepted cat's e-mail, before stanch recorded it
    h.killed_at(["resume", "INC-MAIL"], sandbox.url, operation="SendEmail", when="after",
                match=form_value(USERS[2]))
    assert h.run(["resume", "INC-MAIL"]) == 0
    assert h.run(["rollback", "INC-MAIL"]) == 1  # "nothing undone": a notice cannot be unsent, and none is re-sent

    received = Counter(to for m in sent_emails(sandbox.url) for to in m.to)
    # at-most-once: ann once; bob's send never happened and is not repeated; cat's happened once
    assert received == {USERS[0]: 1, USERS[2]: 1}, received
    postmortem = (h.folder / "postmortem.md").read_text()
    section = postmortem.split("## Possibly sent", 1)[1].split("\n## ", 1)[0]
    assert USERS[1] in section and USERS[2] in section and USERS[0] not in section
    events = h.events()
    email_step = next(e for e in reversed(events) if e["kind"] == "step.succeeded" and e["step"] == "email-users")
    assert email_step["data"]["output"]["possibly_sent"] == USERS[1:]
    assert [s["recipient"] for s in email_step["data"]["output"]["sent"]] == USERS[:1]
    assert verify(h.folder / "timeline.jsonl").ok
    _assert_one_final_header_and_one_report_per_step(sandbox, "INC-MAIL")
    assert sum(ANNOUNCE in m["text"] for m in _top_level(sandbox, "C0INCIDENT")) == 1


@pytest.mark.timeout(900)
def test_slack_kill_before_and_after_post_and_in_report_phase_posts_everything_once(
    sandbox: Sandbox, tmp_path: Path, killpoints_enabled: None
) -> None:
    h, run = _harness(sandbox, tmp_path, "INC-SLACK")
    slack = _slack_root(sandbox)
    # 1. killed as Slack receives the announcement (intent recorded, nothing posted)
    h.killed_at(run, slack, operation="chat.postMessage", when="before", match=ANNOUNCE)
    assert sum(ANNOUNCE in m["text"] for m in _top_level(sandbox, "C0INCIDENT")) == 0
    # 2. killed after Slack stored the announcement, before stanch recorded it
    h.killed_at(["resume", "INC-SLACK"], slack, operation="chat.postMessage", when="after", match=ANNOUNCE)
    # 3. the announcement is found by metadata; killed in the step's report phase (report posted,
    #    step.succeeded recorded, slack.report_posted not)
    events = h.killed_at(["resume", "INC-SLACK"], slack, operation="chat.postMessage", when="after",
                         match="Announce in the incident channel")
    assert any(e["kind"] == "intent.settled" and e["data"]["outcome"] == "found" for e in events)
    assert any(e["kind"] == "step.succeeded" and e["step"] == "announce" for e in events)
    assert not any(e["kind"] == "slack.report_posted" and e["step"] == "announce" for e in events)
    # 4. killed after the users' channel message: the step's report phase never ran
    h.killed_at(["resume", "INC-SLACK"], slack, operation="chat.postMessage", when="after",
                match="security update is out")
    assert h.run(["resume", "INC-SLACK"]) == 0
    assert h.run(["rollback", "INC-SLACK"]) == 1  # "nothing undone": a notice cannot be unsent, and none is re-sent

    assert sum(ANNOUNCE in m["text"] for m in _top_level(sandbox, "C0INCIDENT")) == 1
    assert [m["text"] for m in _top_level(sandbox, "C0SECURITY")] == [
        "Users: a security update is out, please update now."]
    _assert_one_final_header_and_one_report_per_step(sandbox, "INC-SLACK")
    assert Counter(to for m in sent_emails(sandbox.url) for to in m.to) == {u: 1 for u in USERS}
    assert "## Possibly sent" not in (h.folder / "postmortem.md").read_text()
    assert verify(h.folder / "timeline.jsonl").ok
