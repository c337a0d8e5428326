"""What a resumed run learns from the timeline about notifications: intents and their last state,
the Slack header and posted reports; and the post-mortem's "Possibly sent" list."""

from __future__ import annotations

from typing import Any

from flows.engine.reports import postmortem_context
from flows.engine.resume import prior_progress


def _e(kind: str, step: str | None = None, **data: Any) -> dict[str, Any]:
    return {"kind": kind, "step": step, "item": None, "ts": "2026-11-28T10:00:00.000Z", "data": data}


EVENTS = [
    _e("run.started", incident_id="INC-1"),
    _e("slack.header", channel="C0INCIDENT", ts="1.000001"),
    _e("intent.recorded", "mail", key="INC-1:mail:email:a@x.example", sink="ses", recipient="a@x.example"),
    _e("intent.settled", "mail", key="INC-1:mail:email:a@x.example", outcome="sent", message_id="m-1"),
    _e("intent.recorded", "mail", key="INC-1:mail:email:b@x.example", sink="ses", recipient="b@x.example"),
    _e("intent.recorded", "mail", key="INC-1:mail:email:c@x.example", sink="ses", recipient="c@x.example"),
    _e("intent.settled", "mail", key="INC-1:mail:email:c@x.example", outcome="not_sent", error="Throttling"),
    _e("step.succeeded", "scope", output={}),
    _e("report.written", "scope", status="succeeded"),
    _e("slack.report_posted", "scope", status="succeeded"),
    _e("step.succeeded", "announce", output={}),
    _e("report.written", "announce", status="succeeded"),
]


def test_prior_progress_knows_intents_header_and_posted_reports() -> None:
    p = prior_progress(EVENTS)
    assert {k.rsplit(":", 1)[1]: v["state"] for k, v in p.intents.items()} == {
        "a@x.example": "sent", "b@x.example": "open", "c@x.example": "not_sent"}
    assert p.intents["INC-1:mail:email:a@x.example"]["message_id"] == "m-1"
    assert p.slack_header == {"channel": "C0INCIDENT", "ts": "1.000001"}
    assert p.reports_written == {"scope": "succeeded", "announce": "succeeded"}
    assert p.reports_posted == {("scope", "succeeded")}  # announce's report phase was cut short


def test_postmortem_lists_only_unconfirmed_sends_as_possibly_sent() -> None:
    settled = [*EVENTS, _e("intent.settled", "mail", key="INC-1:mail:email:b@x.example", outcome="possibly_sent")]
    for events, state in ((EVENTS, "open"), (settled, "possibly_sent")):
        ctx = postmortem_context(events, {"steps": []})
        assert [(n["to"], n["state"]) for n in ctx["possibly_sent"]] == [("b@x.example", state)]
