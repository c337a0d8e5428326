"""Pure scheduling decisions: readiness, skipping, outcome and compensation order."""

from __future__ import annotations

from pathlib import Path

from flows.engine.compiler import compile_plan
from flows.engine.conductor import RunOutcome, RunState, StepStatus, compensation_order
from flows.engine.spec.models import Runbook
from integrations.base import ActionRegistry
from integrations.core import register


def _plan(steps: list[dict]) -> object:
    reg = ActionRegistry()
    register(reg)
    rb = Runbook.model_validate({"name": "t", "title": "T", "steps": steps})
    return compile_plan(rb, Path("t.yaml"), reg)


def test_independent_branches_are_ready_together_and_order_is_topological() -> None:
    plan = _plan(
        [
            {"id": "c", "action": "core.note", "with": {"message": "c"}, "needs": ["a", "b"]},
            {"id": "a", "action": "core.note", "with": {"message": "a"}},
            {"id": "b", "action": "core.note", "with": {"message": "b"}},
        ]
    )
    assert [s.id for s in plan.steps] == ["a", "b", "c"]
    st = RunState(plan)
    assert [s.id for s in st.ready()] == ["a", "b"]
    st.mark("a", StepStatus.SUCCEEDED)
    assert [s.id for s in st.ready()] == ["b"]
    st.mark("b", StepStatus.SUCCEEDED)
    assert [s.id for s in st.ready()] == ["c"]
    assert plan.step("c").upstream == {"a", "b"}


def test_failed_required_step_skips_dependents_and_fails_run() -> None:
    plan = _plan(
        [
            {"id": "a", "action": "core.fail"},
            {"id": "b", "action": "core.note", "with": {"message": "b"}, "needs": ["a"]},
        ]
    )
    st = RunState(plan)
    st.mark("a", StepStatus.FAILED)
    assert st.blocked_by(plan.step("b")) == "needed step 'a' failed"
    assert st.outcome() is RunOutcome.FAILED
    assert st.failed_required() == ["a"]


def test_continue_on_error_does_not_block_or_fail() -> None:
    plan = _plan(
        [
            {"id": "a", "action": "core.fail", "continue_on_error": True},
            {"id": "b", "action": "core.note", "with": {"message": "b"}, "needs": ["a"]},
        ]
    )
    st = RunState(plan)
    st.mark("a", StepStatus.FAILED)
    assert st.blocked_by(plan.step("b")) is None
    st.mark("b", StepStatus.SUCCEEDED)
    assert st.outcome() is RunOutcome.SUCCEEDED


def test_compensations_run_in_reverse_completion_order() -> None:
    plan = _plan(
        [
            {"id": "a", "action": "core.note", "with": {"message": "a"}, "compensate": "core.note"},
            {"id": "b", "action": "core.note", "with": {"message": "b"}, "compensate": "core.note"},
            {"id": "c", "action": "core.note", "with": {"message": "c"}},
        ]
    )
    order = compensation_order(plan, ["b", "a", "c"], {"a", "b", "c"})
    assert [s.id for s in order] == ["a", "b"]
    assert [s.id for s in compensation_order(plan, ["b", "a"], {"b"})] == ["b"]


def test_default_title_is_the_step_id_not_the_action_summary() -> None:
    plan = _plan([
        {"id": "tell-security", "action": "core.note", "with": {"message": "x"}},
        {"id": "gate", "approval": {"approvers": ["U1"]}},
        {"id": "named", "title": "A title", "action": "core.note", "with": {"message": "y"}},
    ])
    assert [s.title for s in plan.steps] == ["tell-security", "gate", "A title"]


def _when_plan() -> object:
    return _plan([
        {"id": "a", "action": "core.note", "with": {"message": "a"}},
        {"id": "b", "action": "core.fail", "needs": ["a"]},
        {"id": "c", "action": "core.note", "with": {"message": "c"}, "needs": ["b"]},
        {"id": "tell", "when": "on_failure", "action": "core.note", "with": {"message": "x"}},
        {"id": "always", "when": "always", "action": "core.note", "with": {"message": "y"}},
        {"id": "after", "when": "always", "needs": ["tell"], "action": "core.note", "with": {"message": "z"}},
    ])


def test_when_steps_wait_for_every_ordinary_step_and_see_all_of_them_upstream() -> None:
    plan = _when_plan()
    assert [s.id for s in plan.steps][:3] == ["a", "b", "c"]
    assert plan.step("tell").upstream == {"a", "b", "c"}
    assert plan.step("after").upstream == {"a", "b", "c", "tell"}
    st = RunState(plan)
    assert [s.id for s in st.ready()] == ["a"]
    st.mark("a", StepStatus.SUCCEEDED)
    st.mark("b", StepStatus.RUNNING)
    assert st.ready() == []  # b in flight: no when-step yet
    st.mark("b", StepStatus.FAILED)
    assert [s.id for s in st.ready()] == ["c"]
    assert st.blocked_by(plan.step("c")) == "needed step 'b' failed"
    st.mark("c", StepStatus.SKIPPED)
    assert [s.id for s in st.ready()] == ["tell", "always"]
    assert st.blocked_by(plan.step("tell")) is None  # a failed run: on_failure runs
    assert st.blocked_by(plan.step("always")) is None  # skipped/failed upstream does not skip it
    assert st.summary() == {"outcome": "failed", "failed_steps": ["b"], "declined_steps": []}
    st.mark("tell", StepStatus.SUCCEEDED)
    st.mark("always", StepStatus.SUCCEEDED)
    assert [s.id for s in st.ready()] == ["after"]


def test_on_failure_is_skipped_when_the_run_succeeded_and_always_still_runs() -> None:
    plan = _when_plan()
    st = RunState(plan)
    for sid in ("a", "b", "c"):
        st.mark(sid, StepStatus.SUCCEEDED)
    assert st.blocked_by(plan.step("tell")) == "the run has not failed (when: on_failure)"
    assert st.blocked_by(plan.step("always")) is None
    st.mark("tell", StepStatus.SKIPPED)
    assert st.blocked_by(plan.step("after")) == "needed step 'tell' was skipped"


def test_a_failed_when_step_fails_the_run_unless_continue_on_error() -> None:
    plan = _plan([
        {"id": "a", "action": "core.note", "with": {"message": "a"}},
        {"id": "n", "when": "always", "action": "core.fail"},
        {"id": "m", "when": "always", "action": "core.fail", "continue_on_error": True},
    ])
    st = RunState(plan)
    st.mark("a", StepStatus.SUCCEEDED)
    st.mark("m", StepStatus.FAILED)
    assert st.outcome() is RunOutcome.SUCCEEDED
    st.mark("n", StepStatus.FAILED)
    assert st.outcome() is RunOutcome.FAILED


def test_a_declined_approval_is_skipped_not_failed_and_named() -> None:
    plan = _plan([
        {"id": "gate", "approval": {"approvers": ["U1"], "on_deny": "skip"}},
        {"id": "act", "action": "core.note", "with": {"message": "a"}, "needs": ["gate"]},
    ])
    st = RunState(plan)
    st.decline("gate", "denied by U1")
    assert st.status["gate"] is StepStatus.SKIPPED
    assert st.blocked_by(plan.step("act")) == "needed step 'gate' was skipped"
    st.mark("act", StepStatus.SKIPPED)
    assert st.outcome() is RunOutcome.SUCCEEDED
    assert st.summary()["declined_steps"] == ["gate"]
