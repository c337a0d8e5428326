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
