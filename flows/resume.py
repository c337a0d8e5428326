"""What an earlier (crashed or aborted) run of an incident already did, read from its timeline.

Owns: ``PriorProgress`` — succeeded steps with their outputs, succeeded fan-out items with theirs,
and compensations already done — so ``stanch resume`` skips finished work and ``stanch rollback``
never undoes a step twice. Must not touch: Prefect, boto3, Slack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class PriorProgress:
    steps: dict[str, Any] = field(default_factory=dict)          # step id -> output (succeeded steps)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)  # step id -> {item key: output}
    compensated: set[tuple[str, str | None]] = field(default_factory=set)
    succeeded_order: list[str] = field(default_factory=list)
    compensation_records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    runs: int = 0
    finished: bool = False

    def item_done(self, step: str, key: str | None) -> bool:
        return key is not None and key in self.items.get(step, {})


def prior_progress(events: list[dict[str, Any]]) -> PriorProgress:
    p = PriorProgress()
    for e in events:
        kind, step, item, data = e["kind"], e.get("step"), e.get("item"), e.get("data") or {}
        if kind in ("run.started", "run.resumed"):
            p.runs += 1
            p.finished = False
        elif kind == "run.finished":
            p.finished = True
        elif kind == "item.succeeded" and step and item is not None:
            p.items.setdefault(step, {})[item] = data.get("output")
        elif kind == "step.succeeded" and step:
            p.steps[step] = data.get("output")
            if step in p.succeeded_order:
                p.succeeded_order.remove(step)
            p.succeeded_order.append(step)
            if data.get("compensation"):
                p.compensation_records[step] = data["compensation"]
        elif kind == "compensation.succeeded" and step:
            p.compensated.add((step, item))
    return p
