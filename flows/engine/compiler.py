"""Compile a validated runbook into a Plan: frozen, ordered, Prefect-free.

Owns: ``Plan``/``PlannedStep`` (what the runtime executes and ``stanch plan`` prints), the
topological order of steps, the upstream sets used by the conductor, and input resolution
(``--input k=v`` strings -> typed values, every problem reported together).

Must not touch: Prefect, boto3, Slack. Templates are *not* rendered here (that needs run-time
values); only their text is carried.
"""

from __future__ import annotations

import graphlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.engine.spec.models import Approval, Compensation, InputSpec, Runbook, Step
from flows.engine.spec.templates import TemplatePathError, resolve_template
from integrations.base import ActionRegistry
from integrations.errors import InputError, RunbookError


@dataclass(frozen=True)
class PlannedCompensation:
    action: str
    with_: dict[str, Any]


@dataclass(frozen=True)
class PlannedStep:
    id: str
    title: str
    action: str | None
    with_: dict[str, Any]
    needs: tuple[str, ...]
    upstream: frozenset[str]
    if_: str | None
    for_each: str | list[Any] | None
    item_name: str | None
    concurrency: int
    retries: int
    retry_delay: float
    timeout: float | None
    continue_on_error: bool
    mutating: bool
    compensate: PlannedCompensation | None
    report: Path | None
    approval: Approval | None
    summary: str = ""
    batch: int = 1
    when: str = "on_success"

    @property
    def runs_last(self) -> bool:
        """``when: always`` / ``when: on_failure``: ready once every ordinary step is final."""
        return self.when != "on_success"

    @property
    def fans_out(self) -> bool:
        return self.for_each is not None


@dataclass(frozen=True)
class Plan:
    runbook: Runbook
    source: Path
    steps: tuple[PlannedStep, ...]
    default_report: Path | None
    postmortem_template: Path | None
    inputs: dict[str, InputSpec] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.runbook.name

    def step(self, step_id: str) -> PlannedStep:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "runbook": self.runbook.name,
            "title": self.runbook.title,
            "severity": self.runbook.severity,
            "owner": self.runbook.owner,
            "source": str(self.source),
            "steps": [
                {
                    "id": s.id,
                    "title": s.title,
                    "action": s.action,
                    "approval": s.approval.model_dump() if s.approval else None,
                    "needs": list(s.needs),
                    "if": s.if_,
                    "for_each": s.for_each,
                    "concurrency": s.concurrency,
                    "batch": s.batch,
                    "retries": s.retries,
                    "timeout": s.timeout,
                    "continue_on_error": s.continue_on_error,
                    "when": s.when,
                    "mutating": s.mutating,
                    "compensate": s.compensate.action if s.compensate else None,
                    "with": s.with_,
                }
                for s in self.steps
            ],
        }


def _compensation(step: Step, registry: ActionRegistry) -> PlannedCompensation | None:
    comp = step.compensate
    if comp is None:
        return None
    if isinstance(comp, Compensation):
        return PlannedCompensation(comp.action, dict(comp.with_))
    # Shorthand ``compensate: aws.iam.reactivate_access_keys``: parameters come from the
    # action's own ``compensation_params(params, result)`` at run time.
    return PlannedCompensation(comp, {})


def _template(base: Path, relative: str | None) -> Path | None:
    """A template file confined to the runbook's folder / STANCH_TEMPLATE_DIRS (RB117 at validate)."""
    if not relative:
        return None
    try:
        return resolve_template(base, relative)
    except TemplatePathError as exc:
        raise RunbookError(f"{base}: {exc}") from None


def compile_plan(runbook: Runbook, source: Path, registry: ActionRegistry) -> Plan:
    """Order steps topologically (stable: file order among ready steps) and freeze them."""
    by_id = {s.id: s for s in runbook.steps}
    ordinary = [s.id for s in runbook.steps if not s.runs_last]
    # a when-step runs after every ordinary step: they are all upstream of it (its scope sees them)
    needs = {s.id: ([*ordinary, *s.needs] if s.runs_last else list(s.needs)) for s in runbook.steps}
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for s in runbook.steps:
        sorter.add(s.id, *needs[s.id])
    position = {s.id: i for i, s in enumerate(runbook.steps)}
    order: list[str] = []
    sorter.prepare()
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        order.extend(ready)
        sorter.done(*ready)

    upstream: dict[str, frozenset[str]] = {}
    for sid in order:
        ups: set[str] = set()
        for need in needs[sid]:
            ups.add(need)
            ups |= upstream[need]
        upstream[sid] = frozenset(ups)

    base = source.parent
    steps = []
    for sid in order:
        s = by_id[sid]
        spec = registry.get(s.action) if s.action else None
        steps.append(
            PlannedStep(
                id=s.id,
                title=s.title or s.id,
                action=s.action,
                with_=dict(s.with_),
                needs=tuple(s.needs),
                upstream=upstream[sid],
                if_=s.if_,
                for_each=s.for_each,
                item_name=s.item_name,
                concurrency=s.concurrency or (8 if s.for_each is not None else 1),
                retries=s.retries,
                retry_delay=s.retry_delay,
                timeout=s.timeout,
                continue_on_error=s.continue_on_error,
                mutating=bool(spec and spec.mutating),
                compensate=_compensation(s, registry),
                report=_template(base, s.report),
                approval=s.approval,
                summary=spec.summary if spec else "",
                batch=s.batch or 1,
                when=s.when,
            )
        )
    return Plan(
        runbook=runbook,
        source=source,
        steps=tuple(steps),
        default_report=_template(base, runbook.report),
        postmortem_template=_template(base, runbook.postmortem),
        inputs=dict(runbook.inputs),
    )


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _coerce(name: str, spec: InputSpec, raw: Any) -> Any:
    if not isinstance(raw, str) or spec.type == "string":
        value = raw
    elif spec.type == "integer":
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"input {name!r} must be an integer, got {raw!r}") from None
    elif spec.type == "number":
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"input {name!r} must be a number, got {raw!r}") from None
    elif spec.type == "boolean":
        low = raw.strip().lower()
        if low not in _TRUE | _FALSE:
            raise ValueError(f"input {name!r} must be true or false, got {raw!r}")
        value = low in _TRUE
    else:  # list
        text = raw.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise ValueError(f"input {name!r} must be a JSON list or comma-separated, got {raw!r}") from None
        else:
            value = [v.strip() for v in text.split(",") if v.strip()]
    if spec.choices is not None and value not in spec.choices:
        raise ValueError(f"input {name!r} must be one of {', '.join(map(str, spec.choices))}; got {value!r}")
    return value


def parse_input_pairs(pairs: list[str]) -> dict[str, str]:
    """``["advisory=MAL-2026-2307", …]`` -> dict; a malformed pair is an InputError."""
    out: dict[str, str] = {}
    bad = [p for p in pairs if "=" not in p or not p.split("=", 1)[0].strip()]
    if bad:
        raise InputError("inputs are key=value; could not read: " + ", ".join(repr(b) for b in bad))
    for p in pairs:
        k, v = p.split("=", 1)
        out[k.strip()] = v
    return out


def resolve_inputs(plan: Plan, given: dict[str, Any]) -> dict[str, Any]:
    """Typed input values, defaults applied. All problems are reported in one InputError."""
    problems: list[str] = []
    unknown = sorted(set(given) - set(plan.inputs))
    for name in unknown:
        known = ", ".join(sorted(plan.inputs)) or "none"
        problems.append(f"unknown input {name!r} (this runbook takes: {known})")
    values: dict[str, Any] = {}
    for name, spec in plan.inputs.items():
        if name in given:
            try:
                values[name] = _coerce(name, spec, given[name])
            except ValueError as exc:
                problems.append(str(exc))
        elif spec.is_required:
            problems.append(f"missing required input {name!r}: {spec.description or spec.type}")
        else:
            values[name] = spec.default
    if problems:
        raise InputError(f"{plan.name}: " + "; ".join(problems))
    return values
