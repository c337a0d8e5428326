"""What an earlier (crashed or aborted) run of an incident already did, read from its timeline.

Owns: ``PriorProgress`` — succeeded steps with their outputs, succeeded fan-out items with theirs,
and compensations already done — so ``stanch resume`` skips finished work and ``stanch rollback``
never undoes a step twice; the intents of non-idempotent sends with their last state (open ones
are settled on resume, see ``integrations.base.IntentLedger``); and what Slack already shows — the
incident header (``slack.header``) and which step reports were posted (``slack.report_posted``).
Also what actions recorded per step/item (their before-images and effects: ``ActionContext.history``)
and whether the last attempt finished (``resume_refusal``). Must not touch: Prefect, boto3, Slack.
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
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> {state, ts, ...}
    slack_header: dict[str, Any] | None = None                        # {channel, ts}
    reports_written: dict[str, str] = field(default_factory=dict)     # step id -> status
    reports_posted: set[tuple[str, str]] = field(default_factory=set)  # (step id, status)
    declined: dict[str, dict[str, Any]] = field(default_factory=dict)  # approval step -> its step.skipped data
    outcome: str | None = None          # of the last run.finished
    rolled_back: bool = False           # a rollback started (then resuming would redo undone work)
    compensations_ran: bool = False     # the last attempt ran compensations (its effects were undone)
    # (step, item, kind) -> data of every event recorded with a step: what ActionContext.history reads
    history: dict[tuple[str, str | None, str], list[dict[str, Any]]] = field(default_factory=dict)

    def item_done(self, step: str, key: str | None) -> bool:
        return key is not None and key in self.items.get(step, {})


def prior_progress(events: list[dict[str, Any]]) -> PriorProgress:
    p = PriorProgress()
    for e in events:
        kind, step, item, data = e["kind"], e.get("step"), e.get("item"), e.get("data") or {}
        if step:
            p.history.setdefault((step, item, kind), []).append(data)
        if kind in ("run.started", "run.resumed"):
            p.runs += 1
            p.finished = False
            p.compensations_ran = False
        elif kind == "run.finished":
            p.finished = True
            p.outcome = data.get("outcome")
        elif kind == "rollback.started":
            p.rolled_back = True
        elif kind == "compensation.started":
            p.compensations_ran = True
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
        elif kind == "intent.recorded" and data.get("key"):
            p.intents[data["key"]] = {**{k: v for k, v in data.items() if k != "key"},
                                      "state": "open", "ts": e.get("ts"), "step": step, "item": item}
        elif kind == "intent.settled" and data.get("key") in p.intents:
            p.intents[data["key"]].update({k: v for k, v in data.items() if k not in ("key", "outcome")},
                                          state=data.get("outcome", "sent"))
        elif kind == "step.skipped" and step and data.get("declined"):
            p.declined[step] = data  # a person said no (or nobody said yes in time): that stands
        elif kind == "slack.header" and data.get("ts"):
            p.slack_header = {"channel": data.get("channel"), "ts": data["ts"]}
        elif kind == "report.written" and step:
            p.reports_written[step] = str(data.get("status", ""))
        elif kind == "slack.report_posted" and step:
            p.reports_posted.add((step, str(data.get("status", ""))))
    return p


def resume_refusal(p: PriorProgress) -> tuple[int, str] | None:
    """Why an incident must not be resumed, as (exit code, message); None if it may be.

    ``succeeded`` means there is nothing to do (exit 0). A failed or aborted run may be resumed
    after its cause is fixed (a permission added, a missing secret created) — unless it ran
    compensations: then resuming would skip steps whose effects were undone (exit 2, start a new
    run); a rolled-back incident likewise."""
    if p.rolled_back:
        return 2, ("it was rolled back; resuming would skip steps whose changes were undone. "
                   "Start a new incident with `stanch run`")
    if p.finished and p.outcome == "succeeded":
        return 0, "nothing to resume: its run already finished (succeeded)"
    if p.finished and p.compensations_ran:
        return 2, (f"its run already finished ({p.outcome or 'unknown outcome'}) and ran its compensations; "
                   "resuming would skip steps whose changes were undone. Start a new incident with "
                   "`stanch run`, or `stanch rollback` it")
    return None
