"""Pure run-time decisions: which steps are ready, which must be skipped, how the run ends,
and in which order compensations run.

Owns: ``StepStatus``, ``RunState`` (status of each step, completion order) and the rules:
- a step is *ready* when every step it ``needs`` is final;
- it is *skipped* when a needed step failed (and was not ``continue_on_error``), was skipped,
  or its ``if`` is false (evaluated by the runtime);
- the run *fails* when any step without ``continue_on_error`` failed;
- compensations run for succeeded steps, in reverse order of completion;
- a ``when: always`` / ``when: on_failure`` step is ready once every ordinary step (and its own
  ``needs``, other when-steps) is final; ``on_failure`` is skipped unless the run has failed so far;
- an approval denied with ``on_deny: skip`` is *declined*: skipped (its dependents too), recorded
  in ``declined``, and the run can still succeed.

Must not touch: Prefect, boto3, Slack, the file system.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from flows.engine.compiler import Plan, PlannedStep


class StepStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"

    @property
    def final(self) -> bool:
        return self in (StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED)


class RunOutcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass
class RunState:
    plan: Plan
    status: dict[str, StepStatus] = field(default_factory=dict)
    completed: list[str] = field(default_factory=list)
    declined: dict[str, str] = field(default_factory=dict)  # approval step -> why (on_deny: skip)

    def __post_init__(self) -> None:
        for s in self.plan.steps:
            self.status.setdefault(s.id, StepStatus.PENDING)

    def mark(self, step_id: str, status: StepStatus) -> None:
        self.status[step_id] = status
        if status.final and step_id not in self.completed:
            self.completed.append(step_id)

    @property
    def finished(self) -> bool:
        return all(st.final for st in self.status.values())

    def decline(self, step_id: str, reason: str) -> None:
        """An approval denied with ``on_deny: skip``: skipped, not failed, and remembered."""
        self.declined[step_id] = reason
        self.mark(step_id, StepStatus.SKIPPED)

    def ready(self) -> list[PlannedStep]:
        """Pending steps whose needs are all final, in plan order; a when-step also waits for
        every ordinary step."""
        ordinary_final = all(self.status[s.id].final for s in self.plan.steps if not s.runs_last)
        return [
            s for s in self.plan.steps
            if self.status[s.id] is StepStatus.PENDING and all(self.status[n].final for n in s.needs)
            and (ordinary_final or not s.runs_last)
        ]

    def blocked_by(self, step: PlannedStep) -> str | None:
        """Why a ready step must be skipped because of its upstream (or, for ``when: on_failure``,
        because the run has not failed), or None to run it."""
        if step.when == "on_failure" and self.outcome() is RunOutcome.SUCCEEDED:
            return "the run has not failed (when: on_failure)"
        for need in step.needs:
            st = self.status[need]
            if st is StepStatus.SKIPPED:
                return f"needed step {need!r} was skipped"
            if st is StepStatus.FAILED and not self.plan.step(need).continue_on_error:
                return f"needed step {need!r} failed"
        return None

    def outcome(self) -> RunOutcome:
        for s in self.plan.steps:
            if self.status[s.id] is StepStatus.FAILED and not s.continue_on_error:
                return RunOutcome.FAILED
        return RunOutcome.SUCCEEDED

    def summary(self) -> dict[str, object]:
        """``run`` in a when-step's expressions: the outcome so far (every ordinary step is final
        by then), the failed required steps and the declined approvals."""
        return {"outcome": self.outcome().value, "failed_steps": self.failed_required(),
                "declined_steps": list(self.declined)}

    def failed_required(self) -> list[str]:
        return [s.id for s in self.plan.steps
                if self.status[s.id] is StepStatus.FAILED and not s.continue_on_error]


def compensation_order(plan: Plan, completed: list[str], succeeded: set[str]) -> list[PlannedStep]:
    """Succeeded steps that declare ``compensate``, most recently completed first."""
    return [plan.step(sid) for sid in reversed(completed)
            if sid in succeeded and plan.step(sid).compensate is not None]
