"""Pure run-time decisions: which steps are ready, which must be skipped, how the run ends,
and in which order compensations run.

Owns: ``StepStatus``, ``RunState`` (status of each step, completion order) and the rules:
- a step is *ready* when every step it ``needs`` is final;
- it is *skipped* when a needed step failed (and was not ``continue_on_error``), was skipped,
  or its ``if`` is false (evaluated by the runtime);
- the run *fails* when any step without ``continue_on_error`` failed;
- compensations run for succeeded steps, in reverse order of completion.

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

    def ready(self) -> list[PlannedStep]:
        """Pending steps whose needs are all final, in plan order."""
        return [
            s for s in self.plan.steps
            if self.status[s.id] is StepStatus.PENDING and all(self.status[n].final for n in s.needs)
        ]

    def blocked_by(self, step: PlannedStep) -> str | None:
        """Why a ready step must be skipped because of its upstream, or None to run it."""
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

    def failed_required(self) -> list[str]:
        return [s.id for s in self.plan.steps
                if self.status[s.id] is StepStatus.FAILED and not s.continue_on_error]


def compensation_order(plan: Plan, completed: list[str], succeeded: set[str]) -> list[PlannedStep]:
    """Succeeded steps that declare ``compensate``, most recently completed first."""
    return [plan.step(sid) for sid in reversed(completed)
            if sid in succeeded and plan.step(sid).compensate is not None]
