"""flows.engine.resume: what a resumed run may skip, and which incidents must not be resumed at all."""

from __future__ import annotations

from typing import Any

from flows.engine.resume import prior_progress, resume_refusal


def _ev(kind: str, step: str | None = None, item: str | None = None, **data: Any) -> dict[str, Any]:
    return {"kind": kind, "step": step, "item": item, "data": data}


def test_a_crashed_run_may_be_resumed() -> None:
    p = prior_progress([_ev("run.started"), _ev("step.succeeded", "a", output=1)])
    assert resume_refusal(p) is None and p.steps == {"a": 1}


def test_a_finished_run_is_not_re_run() -> None:
    done = prior_progress([_ev("run.started"), _ev("run.finished", outcome="succeeded")])
    assert resume_refusal(done) == (0, "nothing to resume: its run already finished (succeeded)")
    undone = prior_progress([_ev("run.started"), _ev("compensation.started", "a"),
                             _ev("run.finished", outcome="failed")])
    code, why = resume_refusal(undone) or (None, "")
    assert code == 2 and "failed" in why and "compensations" in why
    # a failed run that undid nothing may be resumed once its cause is fixed (docs/operations.md)
    failed = prior_progress([_ev("run.started"), _ev("run.finished", outcome="failed")])
    assert resume_refusal(failed) is None
    # a resumed attempt that crashed after a finished one may be resumed again
    again = prior_progress([_ev("run.started"), _ev("run.finished", outcome="failed"), _ev("run.resumed")])
    assert resume_refusal(again) is None


def test_a_rolled_back_incident_is_not_resumed() -> None:
    p = prior_progress([_ev("run.started"), _ev("rollback.started")])
    code, why = resume_refusal(p) or (None, "")
    assert code == 2 and "rolled back" in why


def test_history_keeps_what_actions_recorded_per_step_and_item() -> None:
    p = prior_progress([_ev("action.observed", "revoke", "svc-a", subject="iam:1:user/u", state={"x": 1}),
                        _ev("action.observed", "revoke", "svc-b", subject="iam:1:user/v", state={"x": 2}),
                        _ev("run.started")])
    assert p.history[("revoke", "svc-a", "action.observed")] == [{"subject": "iam:1:user/u", "state": {"x": 1}}]
    assert ("revoke", "svc-b", "action.observed") in p.history
