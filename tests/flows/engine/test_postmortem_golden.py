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


GATED = {"runbook": "compromised-dependency", "title": "Gated", "severity": "sev2", "owner": "@sec",
         "incident_id": "INC-GATE-1",
         "source": str(Path(__file__).resolve().parents[3] / "runbooks" / "compromised-dependency.yaml"),
         "steps": [{"id": "cut", "title": "Cut CI keys", "action": "aws.iam.deactivate_access_key", "mutating": True},
                   {"id": "deny", "title": "Deny the user", "action": "aws.iam.attach_deny_all", "mutating": True},
                   {"id": "gate", "title": "Approve the deletion", "action": None,
                    "approval": {"approvers": ["U0LEAD1"]}},
                   {"id": "delete", "title": "Delete the key", "action": "aws.iam.delete_access_keys",
                    "mutating": True},
                   {"id": "told", "title": "Tell the channel it failed", "action": "slack.post_message",
                    "mutating": True}]}
KEY = "AKIAEXAMPLEKEY000009"


def _gated(decision: str, outcome: str, *compensated: dict[str, Any]) -> list[dict[str, Any]]:
    """cut (a change), deny (found in place: no change), a gate that is denied (on_deny: fail) or
    declined (on_deny: skip), delete needing it, an on_failure step; live_from 250 days earlier."""
    events = [
        _e("04:00:00", "run.started", actor="cli:U0ONCALL", incident_id="INC-GATE-1", runbook="compromised-dependency",
           drill=True, inputs={"advisory": "MAL-2026-2307", "live_from": "2025-07-24T21:00:00Z",
                               "ticket": {"$secret_ref": "ticket"}, "services": ["desktop-app"]}),
        _e("04:00:01", "aws.iam.access_key_deactivated", "cut", account="222222222222", user="ci-desktop-app",
           access_key_id=KEY),
        _e("04:00:01", "step.succeeded", "cut", duration_s=0.4, output={
            "account": "222222222222", "user": "ci-desktop-app", "access_key_id": KEY, "deactivated": True,
            "previous_status": "Active"}),
        _e("04:00:02", "step.succeeded", "deny", duration_s=0.2, output={
            "account": "222222222222", "user": "ci-desktop-app", "policy_name": "StanchDenyAll", "sid": "S1",
            "attached": False, "ours": False}),
        _e("04:00:03", "approval.requested", "gate", approvers=["U0LEAD1"], min_approvals=1,
           expires_at="2026-03-31T04:30:03+00:00", message="Delete it?"),
    ]
    if decision == "denied":
        events += [_e("04:05:03", "approval.denied", "gate", actor="slack:U0LEAD1", approver="slack:U0LEAD1",
                      comment="keep it for forensics"),
                   _e("04:05:03", "step.failed", "gate", duration_s=300.0,
                      error="denied by slack:U0LEAD1: keep it for forensics"),
                   _e("04:05:04", "step.skipped", "delete", reason="needed step 'gate' failed"),
                   _e("04:05:05", "step.succeeded", "told", duration_s=0.1, output={"channel": "C0", "ts": "1.2"})]
    else:
        events += [_e("04:05:03", "approval.expired", "gate", reason="nobody decided within 300s: denied"),
                   _e("04:05:03", "step.skipped", "gate", declined=True,
                      reason="approval declined (approval expired after 300s with 0 of 1 approvals: denied); "
                             "on_deny: skip"),
                   _e("04:05:04", "step.skipped", "delete", reason="needed step 'gate' was skipped"),
                   _e("04:05:05", "step.skipped", "told", reason="the run has not failed (when: on_failure)")]
    return [*events, *compensated, _e("04:05:09", "run.finished", outcome=outcome, duration_s=309.0)]


def test_a_denied_gate_gets_advice_that_works_and_no_op_steps_are_not_changes() -> None:
    ctx = postmortem_context(_gated("denied", "failed"), GATED)
    text = render_postmortem(_gated("denied", "failed"), GATED)
    # the key-deactivated event's Detail names the key (it was empty)
    row = next(line for line in text.splitlines() if "| aws.iam.access_key_deactivated |" in line)
    assert row.endswith(f"| access_key_id: {KEY}; account: 222222222222; user: ci-desktop-app |"), row
    # 250 days, not 6000 hours; a failed run is "not contained", once
    assert ctx["detection"]["time_to_detect"] == "249 d 7 h"
    assert "Outcome: **failed**; not contained." in text and text.count("not contained from") == 0
    # deny found the policy in place: not a change; cut is
    assert ctx["summary"]["unchanged"] == ["Deny the user (`deny`)"]
    assert [line.split(" (`")[0] for line in ctx["summary"]["changed"]["aws.iam"]] == ["Cut CI keys"]
    assert "Already as wanted, changed nothing: Deny the user (`deny`)." in text
    # resume asks the approvers again (no compensation ran): the advice says so, with the real command
    (gate,) = [a["item"] for a in ctx["action_items"] if "`gate`" in a["item"]]
    assert gate == ("`gate` (Approve the deletion) was denied by slack:U0LEAD1 (keep it for forensics). If the "
                    "change is still needed, `stanch resume INC-GATE-1` asks the approvers again.")
    # after compensations resume is refused: a new run with the same inputs (secret as name=…)
    undone = _gated("denied", "failed", _e("04:05:06", "compensation.started", "cut", action="aws.iam.reactivate"),
                    _e("04:05:07", "compensation.succeeded", "cut", action="aws.iam.reactivate", output={}))
    (gate,) = [a["item"] for a in postmortem_context(undone, GATED)["action_items"] if "`gate`" in a["item"]]
    assert gate.endswith("start a new run with the same inputs: `stanch run compromised-dependency --drill "
                         "--input advisory=MAL-2026-2307 --input live_from=2025-07-24T21:00:00Z --input ticket=… "
                         "--input 'services=[\"desktop-app\"]'` (`stanch resume` is refused: this run's compensations "
                         "already undid its earlier steps).")
    assert "stanch resume INC-GATE-1" not in gate


def test_a_declined_gate_and_a_when_step_are_not_what_went_badly() -> None:
    events = _gated("declined", "succeeded")
    ctx = postmortem_context(events, GATED)
    assert ctx["went_badly"] == []  # the on_failure step skipped in a run that did not fail is the good outcome
    assert ctx["summary"]["left"] == ["decide whether `gate` (Approve the deletion) is still needed (declined: "
                                      "approval declined (approval expired after 300s with 0 of 1 approvals: "
                                      "denied); on_deny: skip)"]
    (gate,) = [a["item"] for a in ctx["action_items"] if "`gate`" in a["item"]]
    assert "`stanch resume` keeps that decision" in gate and "stanch run compromised-dependency --drill" in gate
    assert "Outcome: **succeeded**; contained 2.0 s after the run's start, 249 d 7 h from detection." in \
        render_postmortem(events, GATED)
    # a skip caused by a failure still is a problem
    failed = [*events[:-4], _e("04:05:04", "step.failed", "gate", error="boom"),
              _e("04:05:04", "step.skipped", "delete", reason="needed step 'gate' failed"), events[-1]]
    assert "Delete the key (delete) was skipped: needed step 'gate' failed" in \
        postmortem_context(failed, GATED)["went_badly"]


def test_ids_and_nested_values_are_shown_in_full() -> None:
    from flows.engine.reports import event_detail

    sent = [{"recipient": f"user{i}@customer.example", "message_id": f"m-{i:040d}"} for i in range(3)]
    event = _e("04:00:00", "step.succeeded", "email", output={"sent": sent, "skipped": [], "note": "n " * 400})
    detail = event_detail(event)
    assert "{…}" not in detail and "user2@customer.example" in detail and f"m-{2:040d}" in detail
    assert detail.startswith("sent (3): {recipient: user0@customer.example; message_id: m-")
    assert "skipped: none" in detail and detail.endswith("…")  # only the long free text is cut
    keys = [f"AKIA{i:016d}" for i in range(60)]
    many = event_detail(_e("04:00:00", "step.succeeded", "cut", output={"deactivated": keys}))
    assert keys[49] in many and keys[50] not in many and many.endswith("… and 10 more")


def test_a_checkpoint_reads_as_its_witnesses_show_it() -> None:
    """``checkpoint.signed``: what was signed, in the words of the Slack/Prefect witness line (the
    full hash, to compare), not the signature or the format version."""
    from flows.engine.reports import event_detail

    digest = "ee3ce8d4b139c58b9c756a2a7ea30592f82bd293b5221d118e0cc67b00ffb4d0"
    event = _e("04:00:00", "checkpoint.signed", None, v=2, label="step scope", incident="INC-1", seq=7,
               hash=digest, key="311a8895083566fe", signature="c2lnbmF0dXJl" * 7)
    assert event_detail(event) == f"step scope: seq 7 sha256 {digest} (key 311a8895083566fe)"


def test_a_take_over_that_asks_again_counts_the_wait_from_the_first_ask_and_says_it_stopped() -> None:
    """A worker died while the approval was pending; the take-over run asked again 5 min later and
    the lead approved 6 min 45 s after the FIRST ask: people were waited for 6 min 45 s, not the
    1 min 45 s since the second ask; and 'What went badly' says the run stopped and was resumed."""
    i = next(n for n, e in enumerate(EVENTS) if e["kind"] == "approval.requested")
    first = EVENTS[i]
    events = [*EVENTS[:i + 1],
              _e("04:05:00", "run.resumed", actor="cli:U0ONCALL", incident_id="INC-GOLD-1", already_done=[]),
              {**first, "ts": "2026-03-31T04:05:00Z"},
              _e("04:06:45", "approval.granted", "approve-email", approved_by=["slack:U0LEAD1"]),
              _e("04:06:50", "run.finished", outcome="succeeded", failed_steps=[], declined_steps=[])]
    ctx = postmortem_context(events, PLAN)
    waited = (6 * 60 + 45) - int(first["ts"][14:16]) * 60 - int(first["ts"][17:19])
    assert ctx["effort"]["people"] == f"{waited // 60} min {waited % 60:02d} s", (ctx["effort"], first["ts"])
    resumed = [line for line in ctx["went_badly"] if "resumed at 2026-03-31T04:05:00Z" in line]
    assert resumed and "interrupted without a trace (a crash, a killed process or a lost worker)" in resumed[0]
    aborted = [*events[:i + 1], _e("04:04:00", "run.aborted", error="stopped by SIGTERM"), *events[i + 1:]]
    assert any("was interrupted (stopped by SIGTERM) and was resumed" in line
               for line in postmortem_context(aborted, PLAN)["went_badly"])
