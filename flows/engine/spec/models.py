"""Pydantic models of a runbook: the shape of the language, nothing else.

Owns: ``Runbook``, ``Step``, ``InputSpec``, ``Approval``, ``Compensation`` and the duration type.
Semantic checks (graph, actions, templates) live in ``flows.engine.spec.checks``; YAML and source
positions in ``flows.engine.spec.loader``.
Must not touch: Prefect, boto3, Slack, the action registry.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

#: Longest accepted duration (30 days): anything longer is a typo, and overflows timers.
MAX_DURATION = 30 * 86400.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """``30`` / ``"30s"`` / ``"2m"`` / ``"1h"`` / ``"250ms"`` -> seconds (float)."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '30s', '2m', '1h'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    else:
        raise ValueError(f"invalid duration {value!r}: use seconds or a string like '30s', '2m', '1h'")
    if not math.isfinite(seconds):
        raise ValueError(f"a duration must be a finite number of seconds, not {value!r}")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > MAX_DURATION:
        raise ValueError(f"a duration cannot be longer than {MAX_DURATION / 86400:.0f} days")
    return seconds


_DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "number", "minimum": 0, "maximum": MAX_DURATION},
        {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"},
    ],
    "description": "Seconds, or a string like '250ms', '30s', '2m', '1h', '1d'.",
}

Duration = Annotated[float, BeforeValidator(parse_duration), WithJsonSchema(_DURATION_SCHEMA)]

STEP_ID = r"^[a-z][a-z0-9_-]{0,62}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class InputSpec(_Model):
    """A runbook input, given as ``--input key=value`` or ``key=value`` in Slack."""

    type: Literal["string", "integer", "number", "boolean", "list"] = "string"
    description: str = ""
    default: Any = None
    required: bool | None = Field(default=None, description="Defaults to true when there is no default.")
    choices: list[Any] | None = None
    secret: bool = Field(default=False, description="Value is redacted from every output.")

    @property
    def is_required(self) -> bool:
        return self.required if self.required is not None else self.default is None


class Approval(_Model):
    """A gate: the run pauses until enough allowed people approve (or it expires: denied)."""

    approvers: list[str] = Field(min_length=1, description="Slack user ids (U…), or @user-group handles.")
    min_approvals: int = Field(default=1, ge=1, le=10)
    expires: Duration = Field(default=1800.0, description="Deny when nobody decided in time.")
    message: str | None = Field(default=None, description="What approvers are asked (a template).")
    on_deny: Literal["fail", "skip"] = Field(
        default="fail", description="Denied or expired: 'fail' fails the step; 'skip' skips it and the steps "
        "that need it, and the run can still succeed (the outcome names the declined gate).")


class Compensation(_Model):
    """How to undo a step: an action and its ``with:`` (templates may use ``output``/``params``)."""

    action: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")


class Step(_Model):
    id: str = Field(pattern=STEP_ID, description="Unique; names the task run and the report file.")
    title: str | None = None
    description: str | None = None
    action: str | None = Field(default=None, description="A registered action (see `stanch actions`).")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with", description="Action parameters.")
    needs: list[str] = Field(default_factory=list, description="Steps that must finish first.")
    if_: str | None = Field(default=None, alias="if", description="Expression; the step is skipped if false.")
    for_each: str | list[Any] | None = Field(default=None, description="Fan out over a list (item = `item`).")
    item_name: str | None = Field(default=None, description="Expression naming each fan-out item.")
    concurrency: int | None = Field(default=None, ge=1, le=256, description="Max items in flight.")
    batch: int | None = Field(default=None, ge=1, le=1000, description="Fan-out items per task run (default 1: "
                              "a task run per item). For fan-outs of hundreds of items.")
    retries: int = Field(default=0, ge=0, le=20, description="Retries on transient errors only.")
    retry_delay: Duration = Field(default=1.0, description="Base backoff; doubles per attempt, jittered.")
    timeout: Duration | None = Field(default=None, description="Per attempt (per item when fanned out).")
    continue_on_error: bool = Field(default=False, description="A failure does not fail the run.")
    compensate: str | Compensation | None = Field(default=None, description="Undo action, run on failure.")
    report: str | None = Field(default=None, description="Report template (path relative to the runbook).")
    approval: Approval | None = None
    when: Literal["on_success", "always", "on_failure"] = Field(
        default="on_success", description="'always' / 'on_failure': run after every other step is final "
        "(failed or not), before compensations; 'run.outcome' is in scope. Default: an ordinary step.")

    @property
    def runs_last(self) -> bool:
        """``when: always`` / ``when: on_failure``: runs after every ordinary step is final."""
        return self.when != "on_success"

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        if (self.action is None) == (self.approval is None):
            raise ValueError("a step needs exactly one of 'action' or 'approval'")
        return self


class SlackConfig(_Model):
    channel: str | None = None
    allowed_users: list[str] = Field(default_factory=list, description="Who may start it from Slack.")


class Runbook(_Model):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")
    title: str
    severity: Literal["sev1", "sev2", "sev3", "sev4"] = "sev2"
    description: str = ""
    owner: str | None = None
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)
    report: str | None = Field(default=None, description="Default report template for every step.")
    postmortem: str | None = Field(default=None, description="Post-mortem template.")
    slack: SlackConfig | None = None
