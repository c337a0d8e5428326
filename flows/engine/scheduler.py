"""The engine of one run: schedules the plan's steps as Prefect task runs and records what happens.

Owns: ``Engine`` (the scheduling loop over ready steps — parallel branches, bounded and batched
fan-out, skips —, the per-item task ``run_action`` with retries on transient errors only and
per-attempt timeouts, step reports and artifacts, approvals, and the saga of compensations),
and the error helpers that keep secrets out of what Prefect logs.

Decisions live in ``flows.engine.conductor``; the incident record in ``flows.engine.incident``; the flows that
drive an Engine in ``flows.engine.runtime``.
"""


from __future__ import annotations

import concurrent.futures
import copy
import json
import logging
import random
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from prefect import get_run_logger, task
from prefect.artifacts import MarkdownArtifact, create_markdown_artifact
from prefect.futures import PrefectFuture
from prefect.logging.handlers import APILogHandler
from prefect.logging.loggers import PrefectLogAdapter
from prefect.states import State

from flows.engine.checkpoints import Signer
from flows.engine.compiler import Plan, PlannedStep
from flows.engine.conductor import RunState, StepStatus, compensation_order
from flows.engine.events import listening, publish
from flows.engine.expressions import ExpressionError, is_truthy, render_value
from flows.engine.incident import Incident
from flows.engine.items import item_key
from flows.engine.notify import StatusNotifier
from flows.engine.redaction import Redactor, masked_path
from flows.engine.reports import ReportError, fallback_report, render_step_report
from flows.engine.resume import PriorProgress, prior_progress
from flows.engine.secret_inputs import from_refs, to_refs
from flows.engine.skipped_runs import skipped_task_run
from flows.engine.timeline import isoformat, utcnow
from integrations.base import ActionContext, ActionRegistry, IntentLedger
from integrations.errors import ActionError, PermanentActionError, StanchError
from integrations.settings import StanchSettings


class _ThreadTimeoutNotice(logging.Filter):
    """Prefect warns on every sync task with a timeout that worker threads cannot be interrupted.
    stanch knows (docs/runbook-language.md: a timeout takes effect when the blocking call returns;
    botocore's own connect/read timeouts bound each AWS call), so the notice is noise per item."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "running in a worker thread" not in record.getMessage()


logging.getLogger("prefect.task_runs").addFilter(_ThreadTimeoutNotice())

def _backoff(base: float, retries: int) -> list[float]:
    """Jittered exponential backoff per retry: base, 2·base, 4·base … (±25 %)."""
    return [round(base * (2**i) * random.uniform(0.75, 1.25), 3) for i in range(retries)]


class ItemCall:
    """What a task run needs. A plain object (not a dataclass), so Prefect passes it through
    untouched: it walks dataclasses, lists and dicts of task parameters looking for futures
    (``visit_collection``), which for a batch of items cost more CPU than running the task.
    ``batch`` holds several (key, params) items when the step sets ``batch: N``."""

    __slots__ = ("batch", "engine", "key", "params", "step")

    def __init__(self, engine: Engine, step: PlannedStep, key: str | None, params: dict[str, Any],
                 batch: list[tuple[str, dict[str, Any]]] | None = None) -> None:
        self.engine = engine
        self.step = step
        self.key = key
        self.params = params
        self.batch = batch

    def __repr__(self) -> str:  # shows in Prefect logs; never the params (may be sensitive)
        return f"ItemCall({self.step.id}[{self.key}])" if self.key else f"ItemCall({self.step.id})"

    def __str__(self) -> str:
        """The task run's name (``task_run_name="{call}"``): ``step``, ``step[key]``, ``step[key +N]``."""
        if self.key is None:
            return self.step.id
        more = f" +{len(self.batch) - 1}" if self.batch is not None and len(self.batch) > 1 else ""
        return f"{self.step.id}[{self.key}{more}]"


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError) or (isinstance(exc, ActionError) and exc.transient)


def _retry_condition(task_: Any, task_run: Any, state: State) -> bool:
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:
        return False
    return isinstance(exc, BaseException) and _is_transient(exc)


@task(persist_result=False, log_prints=False)
def run_action(call: ItemCall) -> dict[str, Any]:
    """Run one action (one step, one fan-out item, or a batch of items of a step)."""
    if call.batch is not None:
        return {"batch": call.engine.execute_batch(call)}
    return call.engine.execute(call)


@dataclass
class StepRun:
    step: PlannedStep
    started: datetime
    items: list[dict[str, Any]] = field(default_factory=list)  # {key, status, output, error, params}
    pending: int = 0
    queue: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)
    attempts: int = 1
    fan_out: bool = False
    task_run_id: UUID | None = None  # the step's (first) task run: its report is attached there


Running = dict[Any, tuple[StepRun, str | None, Any, list[dict[str, Any]]]]
"""In-flight task runs: the wrapped concurrent future -> (step run, first item key, Prefect future,
the entries of ``StepRun.items`` it runs)."""


class Engine:
    """State of one run inside the flow. Touches Prefect only through the flow/task above."""

    def __init__(self, plan: Plan, incident: Incident, inputs: dict[str, Any], settings: StanchSettings,
                 registry: ActionRegistry, *, drill: bool, initiator: str,
                 prior: PriorProgress | None = None, slack_channel: str | None = None) -> None:
        self.plan = plan
        self.incident = incident
        self.inputs = inputs
        self.settings = settings
        self.registry = registry
        self.drill = drill
        self.initiator = initiator
        self.state = RunState(plan)
        self.outputs: dict[str, Any] = {}
        self.prior = prior or PriorProgress()
        self.intents = IntentLedger(self.prior.intents)  # exactly-once sends across attempts
        self.notifier = StatusNotifier.from_settings(settings, incident, plan, drill=drill, channel=slack_channel,
                                                     record=self.record, prior=self.prior)
        self._attempts: dict[tuple[str, str | None], int] = {}
        self._lock = threading.Lock()
        self.started_at = isoformat(utcnow())
        self.secret_values = {k: str(inputs[k]) for k, spec in plan.inputs.items()  # not unresolved refs
                              if spec.secret and inputs.get(k) not in (None, "") and not isinstance(inputs[k], dict)}
        # what actions recorded per (step, item, kind), earlier attempts included: ActionContext.history
        self._history = {k: list(v) for k, v in self.prior.history.items()}
        self.signer: Signer | None = Signer.from_settings(settings, incident.id, incident.timeline)
        self._batch_tasks: dict[tuple[str, int], Any] = {}  # (step id, items): the batch task variant

    def checkpoint(self, label: str, *, final: bool = False) -> dict[str, Any] | None:
        """Sign the timeline's head (flows.engine.checkpoints: STANCH_TIMELINE_KEY, else the
        installation key) and publish its hash to witnesses outside the store: a version of the
        Prefect artifact ``<incident>-checkpoints`` and a reply in the incident's Slack thread.
        ``final``: the end of a run or rollback. Nothing is recorded about a witness (after a final
        checkpoint it would leave the head unsigned), so a witness that fails is only logged."""
        if self.signer is None:
            return None
        head = self.signer.checkpoint(label, lambda kind, data: self.record(kind, data=data))
        line = f"checkpoint {label}: seq {head['seq']} sha256 {head['hash']} (key {self.signer.kid})"
        try:
            create_markdown_artifact(markdown=f"`{line}`", key=_artifact_key(self.incident.id, "checkpoints"),
                                     description=f"signed timeline head of {self.incident.id}")
        except Exception as exc:  # artifacts are a witness, not the record
            _log_warning("could not publish the checkpoint as a Prefect artifact: %s", exc)
        problem = self.notifier.witness(line)
        if problem:
            _log_warning("could not publish the checkpoint to Slack: %s", problem)
        return head

    # ----- timeline ---------------------------------------------------------------------------
    def record(self, kind: str, *, step: str | None = None, item: str | None = None,
               data: dict[str, Any] | None = None, actor: str | None = None) -> dict[str, Any]:
        event = self.incident.timeline.append(kind, step=step, item=item, data=data,
                                              actor=actor or "stanch")
        if listening():
            publish({**event, "incident": self.incident.id})
        if kind in _LOGGED:
            _log_event(self.incident.redactor, event)
        return event

    def _record_action(self, kind: str, step: str, item: str | None, data: dict[str, Any],
                       ctx: ActionContext) -> None:
        self.incident.redactor.add(*ctx.secrets)  # registered during this action: redact at once
        event = self.record(kind, step=step, item=item, data=data)
        with self._lock:
            self._history.setdefault((step, item, kind), []).append(event.get("data") or {})

    def _action_history(self, step: str, item: str | None, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._history.get((step, item, kind), []))

    # ----- expressions ------------------------------------------------------------------------
    def scope(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "steps": {s.id: {"output": self.outputs.get(s.id), "status": str(self.state.status[s.id])}
                      for s in self.plan.steps},
            "incident": {"id": self.incident.id, "drill": self.drill, "started_at": self.started_at},
            "runbook": {"name": self.plan.name, "title": self.plan.runbook.title,
                        "severity": self.plan.runbook.severity, "owner": self.plan.runbook.owner},
            "run": self.state.summary(),  # validate allows it in when-steps only
        }

    def report_incident(self) -> dict[str, Any]:
        return {"id": self.incident.id, "drill": self.drill, "started_at": self.started_at,
                "runbook": self.plan.name, "title": self.plan.runbook.title,
                "severity": self.plan.runbook.severity}

    # ----- task body (worker threads) ---------------------------------------------------------
    def execute(self, call: ItemCall) -> dict[str, Any]:
        """Run one action. Its output is returned raw: steps hand each other real values (a
        secret's *name* included); redaction happens where things are written or shown."""
        step, key = call.step, call.key
        assert step.action is not None
        spec = self.registry.get(step.action)
        masked = masked_path(call.params)
        if masked is not None:  # e.g. a prior output read back from the timeline on resume
            raise PermanentActionError(f"parameter {masked!r} holds a redacted value ('[redacted]'); "
                                       "refusing to act on it")
        with self._lock:
            attempt = self._attempts.get((step.id, key), 0) + 1
            self._attempts[(step.id, key)] = attempt
        ctx = ActionContext(incident_id=self.incident.id, step_id=step.id, settings=self.settings,
                            item_key=key, drill=self.drill, runbook=self.plan.name, intents=self.intents,
                            record=lambda kind, data: self._record_action(kind, step.id, key, data, ctx),
                            redact_text=self.incident.redactor.text,
                            history=lambda kind: self._action_history(step.id, key, kind))
        try:
            result = spec.execute(ctx, call.params)
        except Exception as exc:
            self.incident.redactor.add(*ctx.secrets)
            transient = _is_transient(exc)
            if transient and attempt <= step.retries:
                self.record("item.retrying", step=step.id, item=key,
                            data={"attempt": attempt, "error": error_text(exc)})
            clean = _sanitized(exc, self.incident.redactor)
            if transient and attempt > step.retries and isinstance(clean, ActionError):  # no retry left
                clean.args = (f"{clean} — gave up after {attempt} attempt{'s' if attempt > 1 else ''}",)
            raise clean from None
        self.incident.redactor.add(*ctx.secrets)
        out: dict[str, Any] = result.model_dump(mode="json")
        return {"output": out, "attempts": attempt}

    def execute_batch(self, call: ItemCall) -> list[dict[str, Any]]:
        """Items of one task run, one after the other; each item has its own transient-error
        retries with backoff and its own timeline events. Never raises for an item's failure."""
        step = call.step
        out: list[dict[str, Any]] = []
        for key, params in call.batch or []:
            delays = _backoff(step.retry_delay, step.retries)
            for attempt in range(1, step.retries + 2):
                try:
                    res = self.execute(ItemCall(self, step, key, params))
                except Exception as exc:
                    if _is_transient(exc) and attempt <= step.retries:
                        time.sleep(delays[attempt - 1])
                        continue
                    error = error_text(exc)
                    self.record("item.failed", step=step.id, item=key,
                                data={"error": error, "transient": _is_transient(exc)})
                    out.append({"key": key, "status": "failed", "error": error, "attempts": attempt})
                    break
                self.record("item.succeeded", step=step.id, item=key, data={"output": res["output"]})
                out.append({"key": key, "status": "succeeded", "output": res["output"], "attempts": attempt})
                break
        return out

    # ----- scheduling loop (flow thread) ------------------------------------------------------
    def _make_task(self, step: PlannedStep, key: str | None, batch: int | None = None) -> Any:
        """``batch``: how many items the task runs (None: one item, Prefect retries it). In a batch,
        retries are per item inside the task and the timeout covers every item of it. Batch tasks
        are made once per (step, size) — their name comes from the ItemCall (``"{call}"``) and
        they have no Prefect retries — since ``with_options`` costs ~1 ms of CPU; single-item
        tasks get their own jittered retry delays, so each is made afresh."""
        if batch is not None and batch > 1:
            made = self._batch_tasks.get((step.id, batch))
            if made is None:
                made = self._batch_tasks[(step.id, batch)] = run_action.with_options(
                    name=step.id, task_run_name="{call}", retries=0,
                    retry_delay_seconds=_backoff(step.retry_delay, step.retries) or 0,
                    retry_condition_fn=_retry_condition,
                    timeout_seconds=step.timeout * batch if step.timeout else None)
            return made
        return run_action.with_options(
            name=step.id,
            task_run_name=f"{step.id}[{key}]" if key is not None else step.id,
            retries=step.retries if batch is None else 0,
            retry_delay_seconds=_backoff(step.retry_delay, step.retries) or 0,
            retry_condition_fn=_retry_condition,
            timeout_seconds=step.timeout if step.timeout else None,
        )

    def _start_step(self, step: PlannedStep, running: Running) -> None:
        if step.id in self.prior.steps:  # resumed run: finished before the crash, never repeated
            self.outputs[step.id] = self.prior.steps[step.id]
            self.state.mark(step.id, StepStatus.SUCCEEDED)
            self.record("step.already_done", step=step.id, data={"reason": "succeeded in an earlier attempt"})
            self._catch_up_report(step)
            return
        if step.id in self.prior.declined:  # resumed run: an approval declined earlier is not asked again
            self._keep_declined(step, self.prior.declined[step.id])
            return
        blocked = self.state.blocked_by(step)
        scope = self.scope()
        reason = blocked
        if reason is None and step.if_ is not None:
            try:
                if not is_truthy(render_value(step.if_, scope)):
                    reason = f"condition is false: {step.if_}"
            except ExpressionError as exc:
                self._fail_step_early(step, f"cannot evaluate 'if': {exc}")
                return
        if reason is not None:
            self.state.mark(step.id, StepStatus.SKIPPED)
            self.record("step.skipped", step=step.id, data={"reason": reason})
            task_run = skipped_task_run(step.id, self.incident.redactor.text(reason))  # visible in the graph
            self._finish_report(StepRun(step, utcnow(), task_run_id=task_run), StepStatus.SKIPPED, reason=reason)
            return
        if step.approval is not None:
            self._run_approval(step)
            return
        run = StepRun(step, utcnow())
        try:
            if step.for_each is not None:
                items = render_value(step.for_each, scope)
                if not isinstance(items, list):
                    raise ExpressionError(f"for_each must give a list, got {type(items).__name__}")
                run.fan_out = True
                for i, item in enumerate(items):
                    key = item_key(step, item, i, scope)
                    params = render_value(step.with_, {**scope, "item": item})
                    if self.prior.item_done(step.id, key):
                        run.items.append({"key": key, "status": "succeeded", "params": params,
                                          "output": self.prior.items[step.id][key], "reused": True})
                    else:
                        run.queue.append((key, params))
            else:
                run.queue.append((None, render_value(step.with_, scope)))
        except ExpressionError as exc:
            self._fail_step_early(step, str(exc))
            return
        self.state.mark(step.id, StepStatus.RUNNING)
        reused = [it["key"] for it in run.items if it.get("reused")]
        self.record("step.started", step=step.id, data={
            "title": step.title, "action": step.action,
            "items": len(run.queue) + len(reused) if run.fan_out else None,
            **({"already_done": reused} if reused else {})})
        if not run.queue:
            self._complete_step(run)
            return
        self._pump(run, running)

    def _pump(self, run: StepRun, running: Running) -> None:
        size = max(1, run.step.batch) if run.fan_out else 1
        while run.queue and run.pending < run.step.concurrency:
            chunk, run.queue = run.queue[:size], run.queue[size:]
            key, params = chunk[0]
            if run.fan_out:
                for k, _ in chunk:
                    self.record("item.started", step=run.step.id, item=k)
            call = ItemCall(self, run.step, key, params,
                            batch=[(str(k), p) for k, p in chunk] if size > 1 else None)
            fut: PrefectFuture[Any] = self._make_task(run.step, key, len(chunk) if size > 1 else None).submit(call)
            if run.task_run_id is None:
                run.task_run_id = fut.task_run_id
            run.pending += 1
            entries = [{"key": k, "status": "running", "params": p, "chunk": key if size > 1 else None}
                       for k, p in chunk]
            run.items.extend(entries)
            running[fut.wrapped_future] = (run, key, fut, entries)  # type: ignore[attr-defined]

    def _collect(self, run: StepRun, key: str | None, fut_state: State, entries: list[dict[str, Any]]) -> None:
        """Record what a finished task run did to its items (``entries``, in ``run.items``)."""
        run.pending -= 1
        if run.step.batch > 1 and run.fan_out:
            self._collect_batch(run, fut_state, entries)
            return
        entry = entries[0]
        if fut_state.is_completed():
            res = fut_state.result()
            entry.update(status="succeeded", output=res["output"])
            run.attempts = max(run.attempts, res["attempts"])
            if run.fan_out:
                self.record("item.succeeded", step=run.step.id, item=key, data={"output": res["output"]})
        else:
            exc = fut_state.result(raise_on_failure=False)
            entry.update(status="failed", error=error_text(exc))
            run.attempts = max(run.attempts, self._attempts.get((run.step.id, key), 1))
            self.record("item.failed", step=run.step.id, item=key,
                        data={"error": entry["error"], "transient": _is_transient(exc)
                              if isinstance(exc, BaseException) else False})

    def _collect_batch(self, run: StepRun, fut_state: State, members: list[dict[str, Any]]) -> None:
        results = {r["key"]: r for r in fut_state.result()["batch"]} if fut_state.is_completed() else {}
        failure = None if fut_state.is_completed() else error_text(fut_state.result(raise_on_failure=False))
        for it in members:
            res = results.get(it["key"])
            if res is None:  # the whole batch task failed (e.g. timed out): its unfinished items fail
                it.update(status="failed", error=failure or "batch ended before this item ran")
                self.record("item.failed", step=run.step.id, item=it["key"], data={"error": it["error"]})
                continue
            it.update(status=res["status"], output=res.get("output"), error=res.get("error"))
            run.attempts = max(run.attempts, res["attempts"])

    def _complete_step(self, run: StepRun) -> None:
        step = run.step
        failed = [it for it in run.items if it["status"] == "failed"]
        duration = (utcnow() - run.started).total_seconds()
        if run.fan_out:
            output: Any = {"items": {it["key"]: it.get("output") for it in run.items},
                           "succeeded": [it["key"] for it in run.items if it["status"] == "succeeded"],
                           "failed": [it["key"] for it in run.items if it["status"] == "failed"]}
        else:
            output = run.items[0].get("output") if run.items else None
        if failed:
            status = StepStatus.FAILED
            error = "; ".join(f"{it['key']}: {it['error']}" if it["key"] else it["error"] for it in failed)
            self.outputs[step.id] = output
            self.state.mark(step.id, status)
            self.record("step.failed", step=step.id, data={"error": error, "duration_s": duration,
                                                           "continue_on_error": step.continue_on_error})
        else:
            status = StepStatus.SUCCEEDED
            error = None
            self.outputs[step.id] = output
            self.state.mark(step.id, status)
            self.record("step.succeeded", step=step.id, data={
                "output": output, "duration_s": duration, "attempts": run.attempts,
                "compensation": self._compensation_record(run)})
        self._finish_report(run, status, error=error, output=output, duration=duration)

    def _compensation_record(self, run: StepRun) -> list[dict[str, Any]] | None:
        comp = run.step.compensate
        if comp is None:
            return None
        spec = self.registry.get(run.step.action) if run.step.action else None
        records = []
        for it in run.items:
            if it["status"] != "succeeded":
                continue
            try:
                if comp.with_:
                    params = render_value(comp.with_, {**self.scope(), "params": it["params"],
                                                       "output": it.get("output")})
                elif spec is not None and spec.compensation_params is not None:
                    params = spec.compensation_params(spec.params.model_validate(it["params"]),
                                                      spec.result.model_validate(it["output"]))
                else:
                    params = dict(it["params"])
            except Exception as exc:  # the side effect happened: keep the step, say its undo is unknown
                records.append({"item": it["key"], "action": comp.action, "with": None,
                                "error": f"cannot build the compensation's parameters: {error_text(exc)}"})
                continue
            # recorded in the timeline (redacted there): a secret input's value goes as its reference
            records.append({"item": it["key"], "action": comp.action, "with": to_refs(params, self.secret_values)})
        return records

    def _run_approval(self, step: PlannedStep) -> None:
        from flows.engine.approvals import await_approval

        run = StepRun(step, utcnow())
        self.state.mark(step.id, StepStatus.RUNNING)
        self.record("step.started", step=step.id, data={"title": step.title, "approval": True})
        try:
            message = self.approval_message(step)
        except ExpressionError as exc:
            self._fail_step_early(step, f"cannot render the approval message: {exc}")
            return
        granted, output, error = await_approval(self, step, message)
        duration = (utcnow() - run.started).total_seconds()
        self.outputs[step.id] = output
        if not granted and step.approval is not None and step.approval.on_deny == "skip":
            reason = f"approval declined ({error}); on_deny: skip"
            self.state.decline(step.id, reason)
            self.record("step.skipped", step=step.id, data={"reason": reason, "declined": True,
                                                            "output": output, "duration_s": duration})
            run.task_run_id = skipped_task_run(step.id, self.incident.redactor.text(reason))
            self._finish_report(run, StepStatus.SKIPPED, reason=reason, output=output, duration=duration)
        elif granted:
            self.state.mark(step.id, StepStatus.SUCCEEDED)
            self.record("step.succeeded", step=step.id, data={"output": output, "duration_s": duration,
                                                              "attempts": 1, "compensation": None})
            self._finish_report(run, StepStatus.SUCCEEDED, output=output, duration=duration)
        else:
            self.state.mark(step.id, StepStatus.FAILED)
            self.record("step.failed", step=step.id, data={"error": error, "duration_s": duration,
                                                           "continue_on_error": step.continue_on_error})
            self._finish_report(run, StepStatus.FAILED, error=error, output=output, duration=duration)

    def _keep_declined(self, step: PlannedStep, earlier: dict[str, Any]) -> None:
        reason = f"declined in an earlier attempt: {earlier.get('reason', 'approval declined')}"
        self.outputs[step.id] = earlier.get("output") or {}
        self.state.decline(step.id, reason)
        self.record("step.skipped", step=step.id, data={"reason": reason, "declined": True,
                                                        "output": earlier.get("output"), "reused": True})
        if step.id not in self.prior.reports_written:
            self._finish_report(StepRun(step, utcnow()), StepStatus.SKIPPED, reason=reason,
                                output=self.outputs[step.id], duration=0.0)
        else:
            self._catch_up_report(step)

    def approval_message(self, step: PlannedStep) -> str:
        """The approval's ``message`` rendered in the bounded sandbox (the step's title when none).
        Returned raw: the timeline and the Slack notifier redact it where they write it."""
        assert step.approval is not None
        if not step.approval.message:
            return step.title
        value = render_value(step.approval.message, self.scope())
        return value if isinstance(value, str) else str(value)

    def _fail_step_early(self, step: PlannedStep, error: str) -> None:
        self.state.mark(step.id, StepStatus.FAILED)
        self.record("step.failed", step=step.id, data={"error": error, "duration_s": 0.0,
                                                       "continue_on_error": step.continue_on_error})
        self._finish_report(StepRun(step, utcnow()), StepStatus.FAILED, error=error)

    def _finish_report(self, run: StepRun, status: StepStatus, *, error: str | None = None,
                       reason: str | None = None, output: Any = None, duration: float | None = None) -> None:
        step = run.step
        context = {
            "incident": self.report_incident(),
            "inputs": self.inputs,
            "step": {
                "id": step.id, "title": step.title, "action": step.action, "status": str(status),
                "started_at": isoformat(run.started) if status is not StepStatus.SKIPPED else None,
                "finished_at": isoformat(utcnow()), "duration_s": duration, "attempts": run.attempts,
                "error": error, "reason": reason, "output": output,
                "items": [{"key": it["key"], "status": it["status"], "output": it.get("output"),
                           "error": it.get("error")} for it in run.items] if run.fan_out else [],
                "compensation": {"action": step.compensate.action} if step.compensate else None,
            },
        }
        safe_context = self.incident.redactor(context)
        try:
            markdown = render_step_report(step.report or self.plan.default_report, safe_context)
        except ReportError as exc:  # the template failed: say so in the report; the run goes on
            markdown = fallback_report(step.title, str(status), exc, safe_context)
            self.record("report.failed", step=step.id, data={"error": str(exc)})
        path = self.incident.write_report(step.id, markdown)
        markdown = path.read_text(encoding="utf-8")
        try:
            MarkdownArtifact(markdown=markdown, key=_artifact_key(self.incident.id, step.id),
                             description=f"{step.title}: {status}", task_run_id=run.task_run_id).create()
        except Exception as exc:  # artifacts are a convenience; the incident folder is the record
            get_run_logger().warning("could not create artifact for %s: %s", step.id, exc)
        self.record("report.written", step=step.id, data={"path": str(path.relative_to(self.incident.folder)),
                                                          "status": str(status)})
        problem = self.notifier.step_update(step, str(status), markdown)
        if problem:
            self.record("slack.unavailable", step=step.id, data={"error": problem})
        self.checkpoint(f"step {step.id}")

    def _catch_up_report(self, step: PlannedStep) -> None:
        """A step done in an earlier attempt whose report phase the crash cut short: write the
        missing report, or post the written one (the notifier skips what Slack already has)."""
        if step.id not in self.prior.reports_written:
            self._finish_report(StepRun(step, utcnow()), StepStatus.SUCCEEDED, output=self.outputs[step.id])
            return
        path = self.incident.reports_dir / f"{step.id}.md"
        markdown = path.read_text(encoding="utf-8") if path.exists() else f"# {step.title} — SUCCEEDED\n"
        problem = self.notifier.step_update(step, self.prior.reports_written[step.id], markdown)
        if problem:
            self.record("slack.unavailable", step=step.id, data={"error": problem})

    def run(self) -> RunState:
        running: Running = {}
        while True:
            for step in self.state.ready():
                if step.approval is not None and running:
                    continue  # pause only when no task is in flight (a paused flow cannot start tasks)
                self._start_step(step, running)
            if not running:
                if self.state.finished:
                    break
                if not self.state.ready():  # nothing in flight and nothing startable: stuck
                    for s in self.plan.steps:
                        if not self.state.status[s.id].final:
                            self._fail_step_early(s, "could not be scheduled")
                    break
                continue
            done, _ = concurrent.futures.wait(list(running), return_when=concurrent.futures.FIRST_COMPLETED)
            for wrapped in done:
                run, key, fut, entries = running.pop(wrapped)
                fut.wait()
                self._collect(run, key, fut.state, entries)
                if run.queue:
                    self._pump(run, running)
                elif run.pending == 0:
                    self._complete_step(run)
        return self.state

    # ----- saga ----------------------------------------------------------------------------------
    def compensate(self) -> int:
        """Undo succeeded steps (this run's and earlier attempts'), newest first, each once.
        Returns how many compensations failed."""
        done = prior_progress(self.incident.events())
        order = [sid for sid in self.state.completed if self.state.status[sid] is StepStatus.SUCCEEDED]
        order = [sid for sid in done.succeeded_order if sid not in order] + order
        failures = 0
        for step in compensation_order(self.plan, order, set(order)):
            for rec in reversed(done.compensation_records.get(step.id, [])):
                if (step.id, rec.get("item")) in done.compensated:
                    continue
                failures += 0 if self._run_compensation(step, rec) else 1
        return failures

    def _run_compensation(self, step: PlannedStep, rec: dict[str, Any]) -> bool:
        action = rec["action"]
        self.record("compensation.started", step=step.id, item=rec.get("item"), data={"action": action})
        if rec.get("error"):  # recorded when the step succeeded: there is nothing safe to call
            self.record("compensation.failed", step=step.id, item=rec.get("item"),
                        data={"action": action, "error": rec["error"]})
            return False
        try:
            params = from_refs(rec["with"], self.inputs)
        except StanchError as exc:
            self.record("compensation.failed", step=step.id, item=rec.get("item"),
                        data={"action": action, "error": str(exc)})
            return False
        comp_step = PlannedStep(
            id=f"undo-{step.id}", title=f"Undo {step.title}", action=action, with_={}, needs=(),
            upstream=frozenset(), if_=None, for_each=None, item_name=None, concurrency=1,
            retries=max(step.retries, 3), retry_delay=step.retry_delay, timeout=step.timeout,
            continue_on_error=False, mutating=True, compensate=None, report=None, approval=None)
        fut = self._make_task(comp_step, rec.get("item")).submit(
            ItemCall(self, comp_step, rec.get("item"), params))
        fut.wait()
        if fut.state.is_completed():
            self.record("compensation.succeeded", step=step.id, item=rec.get("item"),
                        data={"action": action, "output": fut.state.result()["output"]})
            return True
        self.record("compensation.failed", step=step.id, item=rec.get("item"),
                    data={"action": action, "error": error_text(fut.state.result(raise_on_failure=False))})
        return False


def _sanitized(exc: Exception, redactor: Redactor) -> Exception:
    """The same error with secrets masked: Prefect logs and stores what a task raises."""
    if isinstance(exc, TimeoutError):
        return exc
    text = redactor.text(str(exc))
    if isinstance(exc, ActionError):
        clean = copy.copy(exc)
        clean.args = (text,)
        return clean
    return PermanentActionError(f"{type(exc).__name__}: {text}")


def _log_warning(message: str, *args: Any) -> None:
    try:
        get_run_logger().warning(message, *args)
    except Exception:  # outside a flow run (tests, rollback helpers)
        logging.getLogger("stanch").warning(message, *args)


_LOGGED = frozenset({"step.started", "step.succeeded", "step.failed", "step.skipped", "approval.requested",
                     "approval.approved", "approval.denied", "approval.refused", "approval.expired",
                     "run.finished"})


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _log_event(redactor: Redactor, event: dict[str, Any]) -> None:
    """One line per step start / result / failure cause (and approval decision) through Prefect's
    run logger, so the flow run's Logs tab tells the story. Redacted again before it leaves."""
    kind, step, data = event["kind"], event.get("step") or "", event.get("data") or {}
    level = logging.INFO
    if kind == "step.started":
        what = "an approval" if data.get("approval") else f"action {data.get('action')}"
        items = f", {data['items']} item(s)" if data.get("items") is not None else ""
        line = f"step {step} started: {data.get('title', step)} ({what}{items})"
    elif kind == "step.succeeded":
        line = f"step {step} succeeded in {float(data.get('duration_s') or 0):.1f}s: {_short(data.get('output'))}"
    elif kind == "step.failed":
        level = logging.ERROR
        line = f"step {step} failed: {_short(data.get('error'), 1000)}"
    elif kind == "step.skipped":
        line = f"step {step} skipped: {_short(data.get('reason'))}"
    elif kind == "approval.requested":
        line = (f"step {step} waits for {data.get('min_approvals')} approval(s) from "
                f"{', '.join(map(str, data.get('approvers') or []))} until {data.get('expires_at')}")
    elif kind == "run.finished":
        level = logging.INFO if data.get("outcome") == "succeeded" else logging.ERROR
        line = f"run finished: {data.get('outcome')}" + (
            f"; failed: {', '.join(data['failed_steps'])}" if data.get("failed_steps") else "")
    else:
        level = logging.WARNING if kind in ("approval.refused", "approval.expired") else logging.INFO
        who = data.get("approver") or event.get("actor") or ""
        why = data.get("reason") or data.get("comment") or ""
        line = f"step {step} {kind.split('.', 1)[1]}" + (f" by {who}" if who else "") + (f": {why}" if why else "")
    try:
        run_extra = dict(getattr(get_run_logger(), "extra", None) or {})  # the run ids the line belongs to
    except Exception:  # outside a flow run (tests, rollback helpers)
        logging.getLogger("stanch").log(level, "%s", redactor.text(line))
        return
    PrefectLogAdapter(_run_log(), extra=run_extra).log(level, "%s", redactor.text(line))


def _run_log() -> logging.Logger:
    """``stanch.run``: INFO and up straight to the Prefect API (the run's Logs tab), whatever
    PREFECT_LOGGING_LEVEL quiets on the console (the CLI sets WARNING: its own table is the
    terminal's view). Not propagated, so nothing is printed into the terminal's live table."""
    logger = logging.getLogger("stanch.run")
    if not any(isinstance(h, APILogHandler) for h in logger.handlers):
        logger.addHandler(APILogHandler())
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def _artifact_key(incident_id: str, step_id: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", f"{incident_id}-{step_id}".lower()).strip("-")


def error_text(exc: Any) -> str:
    if isinstance(exc, StanchError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return f"timed out: {exc}" if str(exc) else "timed out"
    if isinstance(exc, BaseException):
        return f"{type(exc).__name__}: {exc}"
    return str(exc)


