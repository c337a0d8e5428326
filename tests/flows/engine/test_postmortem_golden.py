"""The default post-mortem rendered from a fixed timeline, held against a golden file: detection
(time to detect from ``live_from``), the timeline's Detail column with the decisive fields in full
(key ids, recipient count, approver and comment), people vs machine time, the lessons-learned and
"where we got lucky" prompts, and action items with owner and a due date by severity.

Regenerate deliberately with ``STANCH_UPDATE_GOLDEN=1`` and review the diff."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flows.engine.reports import postmortem_context, render_postmortem

GOLDEN = Path(__file__).parent / "golden" / "postmortem_leaked_key.md"
PLAN = {"runbook": "leaked-key", "title": "Leaked access key", "severity": "sev1", "owner": "@security-oncall",
        "incident_id": "INC-GOLD-1",
        "steps": [{"id": "disable", "title": "Deactivate the keys", "action": "aws.iam.deactivate_access_keys",
                   "mutating": True},
                  {"id": "approve-email", "title": "Approve the customer e-mail", "action": None},
                  {"id": "email", "title": "E-mail affected customers", "action": "aws.ses.send_email",
                   "mutating": True},
                  {"id": "rotate", "title": "Rotate the deploy secret", "action": "core.fail", "mutating": True}]}


def _e(ts: str, kind: str, step: str | None = None, actor: str = "stanch", **data: Any) -> dict[str, Any]:
    return {"ts": f"2026-03-31T{ts}Z", "kind": kind, "step": step, "item": None, "actor": actor, "data": data}


EVENTS = [
    _e("04:00:00", "run.started", actor="cli:U0ONCALL", incident_id="INC-GOLD-1", runbook="leaked-key",
       title="Leaked access key", severity="sev1", drill=True, inputs={"live_from": "2026-03-31T00:21:00Z"}),
    _e("04:00:01", "step.started", "disable", title="Deactivate the keys", action="aws.iam.deactivate_access_keys"),
    _e("04:00:03", "step.succeeded", "disable", duration_s=2.0, attempts=1, output={
        "account": "111122223333", "user": "ci-deployer",
        "deactivated": ["AKIAEXAMPLEKEY000001", "AKIAEXAMPLEKEY000002"], "already_inactive": []}),
    _e("04:00:04", "approval.requested", "approve-email", approvers=["U0LEAD1", "@security-leads"],
       min_approvals=1, expires_at="2026-03-31T04:30:04+00:00", message="E-mail 42 customers?"),
    _e("04:12:04", "approval.approved", "approve-email", actor="slack:U0LEAD1", approver="slack:U0LEAD1",
       comment="go ahead, legal signed off", count=1, needed=1),
    _e("04:12:04", "approval.granted", "approve-email", approved_by=["slack:U0LEAD1"]),
    _e("04:12:05", "step.succeeded", "approve-email", duration_s=720.0, attempts=1,
       output={"approved_by": ["slack:U0LEAD1"]}),
    _e("04:12:09", "step.succeeded", "email", duration_s=4.0, attempts=1,
       output={"sent": 42, "recipients": [f"c{i}@example.com" for i in range(12)], "template": "leak-notice"}),
    _e("04:12:10", "step.failed", "rotate", duration_s=0.5, error="AccessDenied: secretsmanager:RotateSecret"),
    _e("04:12:11", "run.finished", outcome="failed", failed_steps=["rotate"], declined_steps=[], duration_s=731.0),
]


def test_postmortem_sections_from_a_timeline_match_the_golden_file() -> None:
    ctx = postmortem_context(EVENTS, PLAN)
    assert ctx["detection"]["time_to_detect"] == "3 h 39 min"
    assert ctx["effort"] == {"people": "12 min 00 s", "machines": "11.0 s"}
    assert {a["due"] for a in ctx["action_items"]} == {"2026-04-07"}
    text = render_postmortem(EVENTS, PLAN)
    assert "AKIAEXAMPLEKEY000001, AKIAEXAMPLEKEY000002" in text and "recipients (12)" in text
    assert "by slack:U0LEAD1 — comment: go ahead, legal signed off" in text
    assert "{…}" not in text
    if os.environ.get("STANCH_UPDATE_GOLDEN"):
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")


def test_action_item_due_dates_and_owner_follow_severity() -> None:
    for severity, due in (("sev2", "2026-04-14"), ("sev3", "2026-04-30")):
        ctx = postmortem_context(EVENTS, {**PLAN, "severity": severity, "owner": None})
        assert {(a["owner"], a["due"]) for a in ctx["action_items"]} == {("unassigned", due)}


def test_exposure_per_asset_runs_from_live_from_to_its_containment() -> None:
    plan = {**PLAN, "steps": [*PLAN["steps"], {"id": "cut", "title": "Cut CI keys", "action":
                                               "aws.iam.deactivate_access_keys", "mutating": True}]}
    events = [*EVENTS[:-1],
              _e("04:05:00", "item.succeeded", "cut", output={"deactivated": ["AKIA1"]}) | {"item": "web-portal"},
              _e("04:06:30", "item.failed", "cut", error="AccessDenied") | {"item": "billing"},
              _e("04:06:31", "step.failed", "cut", error="1 of 2 items failed"), EVENTS[-1]]
    ctx = postmortem_context(events, plan)
    rows = {x["asset"]: x for x in ctx["exposure"]}
    assert rows["web-portal"]["duration"] == "3 h 44 min" and rows["web-portal"]["basis"] == "live_from"
    assert rows["billing"]["duration"] == "not contained"
    assert any("on web-portal" in line for line in ctx["summary"]["changed"]["aws.iam"])
    assert any("billing" in line and "AccessDenied" in line for line in ctx["summary"]["failed"])
    text = render_postmortem(events, plan)
    assert "| web-portal | 2026-03-31 00:21:00 UTC | 2026-03-31 04:05:00 UTC | 3 h 44 min |" in text
