"""Exactly-once Slack posts across crashes: message metadata in the stand-in, settling open
intents of ``slack.post_message`` against channel history, finding the incident header and the
step reports again — and refusing to trust metadata that someone other than stanch's bot posted
(corpus: tests/hostile/slack-metadata/)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import urllib3

from integrations.base import ActionContext, IntentLedger
from integrations.sandbox.slack_standin import SlackStandIn
from integrations.settings import StanchSettings
from integrations.slack import POST_MESSAGE, IncidentThread, SlackClient, SlackUnavailable

HOSTILE = Path(__file__).parents[2] / "hostile" / "slack-metadata"


def _ctx(settings: StanchSettings, incident: str, ledger: IntentLedger, events: list[Any]) -> ActionContext:
    return ActionContext(incident_id=incident, step_id="announce", settings=settings, intents=ledger,
                         record=lambda kind, data: events.append((kind, data)))


def _crashed_ledger(events: list[tuple[str, dict[str, Any]]]) -> IntentLedger:
    """The ledger a resumed run rebuilds when the run died after ``intent.recorded`` (nothing settled)."""
    seed = {d["key"]: {**d, "state": "open", "ts": "2026-01-01T00:00:00Z"}
            for k, d in events if k == "intent.recorded"}
    return IntentLedger(seed)


def _posts(standin: SlackStandIn, text: str) -> list[dict[str, Any]]:
    return [m for m in standin.messages("C0INCIDENT") if text in m["text"]]


def test_metadata_is_stored_and_returned_only_with_include_all_metadata(
    standin: SlackStandIn, client: SlackClient
) -> None:
    meta = {"event_type": "stanch_test", "event_payload": {"k": "v"}}
    ch, ts = client.post("#incident", "tagged", metadata=meta)
    _, reply = client.post(ch, "reply", thread_ts=ts, metadata={**meta, "event_payload": {"k": "r"}})
    plain = client.call("conversations.history", channel=ch, limit=1000)["messages"]
    assert all("metadata" not in m for m in plain)
    assert all(m["ts"] != reply for m in plain)  # thread replies are not in history, as in Slack
    assert [m["metadata"] for m in client.find_tagged("#incident", "stanch_test")] == [meta]
    found = client.find_tagged(ch, "stanch_test", thread_ts=ts)
    assert [m["metadata"]["event_payload"] for m in found] == [{"k": "v"}, {"k": "r"}]


def test_open_intent_already_in_the_channel_is_not_posted_again(
    standin: SlackStandIn, slack_settings: StanchSettings
) -> None:
    incident, events = f"INC-{uuid.uuid4().hex[:6]}", []  # type: list[Any]
    text = f"announce {incident}"
    first = POST_MESSAGE.execute(_ctx(slack_settings, incident, IntentLedger(), events), {"text": text})
    # the run died after Slack stored the message and before intent.settled reached the timeline
    again: list[Any] = []
    second = POST_MESSAGE.execute(_ctx(slack_settings, incident, _crashed_ledger(events), again), {"text": text})
    assert len(_posts(standin, text)) == 1
    assert (second.channel, second.ts) == (first.channel, first.ts)
    assert [(k, d.get("outcome")) for k, d in again if k == "intent.settled"] == [("intent.settled", "found")]


def test_open_intent_not_in_the_channel_is_posted_once(standin: SlackStandIn, slack_settings: StanchSettings) -> None:
    incident, events = f"INC-{uuid.uuid4().hex[:6]}", []  # type: list[Any]
    text = f"announce {incident}"
    with standin.outage("chat.postMessage", status=503), pytest.raises(SlackUnavailable):  # never reaches Slack
        POST_MESSAGE.execute(_ctx(slack_settings, incident, IntentLedger(), events), {"text": text})
    assert not _posts(standin, text)
    again: list[Any] = []
    POST_MESSAGE.execute(_ctx(slack_settings, incident, _crashed_ledger(events), again), {"text": text})
    assert len(_posts(standin, text)) == 1
    assert [d.get("outcome") for k, d in again if k == "intent.settled"] == ["sent"]


def test_settled_intent_is_never_posted_again(standin: SlackStandIn, slack_settings: StanchSettings) -> None:
    incident, ledger = f"INC-{uuid.uuid4().hex[:6]}", IntentLedger()
    text = f"announce {incident}"
    for _ in range(3):  # engine retries of the same item share the run's ledger
        POST_MESSAGE.execute(_ctx(slack_settings, incident, ledger, []), {"text": text})
    assert len(_posts(standin, text)) == 1


def test_header_and_reports_are_found_again_by_metadata(standin: SlackStandIn, client: SlackClient) -> None:
    incident = f"INC-{uuid.uuid4().hex[:6]}"
    thread = IncidentThread(client, "#incident", incident_id=incident)
    ts = thread.start("header", None)
    thread.post_report("Scope", "all good", "succeeded", step="scope")
    resumed = IncidentThread(client, "#incident", incident_id=incident)
    assert resumed.find_header() == ts and resumed.channel == "C0INCIDENT"
    assert resumed.reports_in_thread() == {("scope", "succeeded")}
    assert IncidentThread(client, "#incident", incident_id="INC-other").find_header() is None


@pytest.mark.parametrize("case", sorted(p.name for p in HOSTILE.glob("forged-*.json")))
def test_hostile_forged_metadata_is_not_trusted(
    case: str, standin: SlackStandIn, slack_settings: StanchSettings, client: SlackClient
) -> None:
    spec = json.loads((HOSTILE / case).read_text())
    incident, events = f"INC-{uuid.uuid4().hex[:6]}", []  # type: list[Any]
    text = f"announce {incident}"
    key = f"{incident}:announce:slack:#incident::0"
    for m in spec["messages"]:
        meta = json.loads(json.dumps(m["metadata"]).replace("{key}", key).replace("{incident}", incident))
        standin.add_message("#incident", m["text"], user=m["user"], metadata=meta)
    if spec["expect"] == "posted":
        ledger = IntentLedger({key: {"state": "open", "ts": "2026-01-01T00:00:00Z"}})
        POST_MESSAGE.execute(_ctx(slack_settings, incident, ledger, events), {"text": text})
        assert len(_posts(standin, text)) == 1  # the forged one did not count as stanch's post
        assert [d.get("outcome") for k, d in events if k == "intent.settled"] == ["sent"]
    else:
        assert IncidentThread(client, "#incident", incident_id=incident).find_header() is None


def test_hostile_malformed_metadata_is_refused(standin: SlackStandIn) -> None:
    spec = json.loads((HOSTILE / "malformed.json").read_text())
    http = urllib3.PoolManager()
    for req in spec["requests"]:
        body = {"channel": "#incident", "text": "x", **req}
        resp = http.request("POST", standin.api_url + "chat.postMessage", body=json.dumps(body).encode(),
                            headers={"Content-Type": "application/json",
                                     "Authorization": f"Bearer {standin.token}"})
        assert json.loads(resp.data)["error"] == spec["expect"], req
