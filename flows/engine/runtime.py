"""The Prefect flows stanch runs: ``run_runbook`` (one incident, start or resume) and
``rollback_incident`` (compensations on demand).

Owns: building an Engine for a runbook and an incident, the run's start/finish records, the final
flow state (computed from the steps: a failed required step fails the run), and abort handling.
The scheduling itself lives in ``flows.engine.scheduler``.
"""


from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.exceptions import TerminationSignal
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner

from flows.engine.compiler import compile_plan, resolve_inputs
from flows.engine.conductor import StepStatus
from flows.engine.events import add_listener
from flows.engine.incident import Incident
from flows.engine.incident_list import rollback_outcome
from flows.engine.notify import NO_RUN_LINK
from flows.engine.redaction import Redactor
from flows.engine.resume import PriorProgress, prior_progress
from flows.engine.run_api import current_api_url
from flows.engine.run_labels import incident_tag, run_name, run_tags
from flows.engine.safety import check_drill_targets
from flows.engine.scheduler import Engine, error_text
from flows.engine.secret_inputs import is_ref, public_inputs, resolve, secret_names
from flows.engine.spec import load_runbook
from flows.engine.targets import RunTarget, reattach
from integrations.base import default_registry
from integrations.errors import InputError
from integrations.settings import StanchSettings

__all__ = ["add_listener", "label_current_run", "rollback_incident", "run_runbook"]
log = logging.getLogger("stanch.labels")


def _store_path(store: str) -> Path:
    """The incident folders: ``store`` itself, or — when it is the PostgreSQL store's URL (a
    deployment run's parameter) — this process's working copy of it (``STANCH_HOME/incidents``)."""
    from flows.store import is_url

    return StanchSettings().store_dir if is_url(store) else Path(store)


def _prepare(runbook_path: str, inputs: dict[str, Any], incident_id: str, store: str, drill: bool,
             initiator: str, prior: PriorProgress | None = None, slack_channel: str | None = None,
             *, strict: bool = True) -> Engine:
    """``inputs`` carry secret inputs as ``{"$secret_ref": name}`` (flows.engine.secret_inputs): resolved
    here, in the process that runs the flow. ``strict=False`` (rollback): an unavailable secret
    is left as its reference; a compensation that needs it fails naming it."""
    settings = StanchSettings()
    if prior is not None and prior.runs:
        settings = _recorded_target(settings, Incident(_store_path(store), incident_id))
    if drill:
        check_drill_targets(settings)
    registry = default_registry()
    loaded = load_runbook(Path(runbook_path), registry)
    plan = compile_plan(loaded.runbook, loaded.path, registry)
    if strict:
        plain = sorted(k for k in secret_names(plan) if inputs.get(k) not in (None, "") and not is_ref(inputs[k]))
        if plain:  # a flow parameter is stored by Prefect: the value must never have been one
            raise InputError(f"secret input(s) {', '.join(map(repr, plain))} passed to the flow as values "
                             f"(they are now in Prefect's flow-run parameters): pass {{'$secret_ref': name}} "
                             f"and keep the value in the process (flows.engine.secret_inputs.deposit)")
    given, missing = resolve(incident_id, inputs, strict=strict)
    values = resolve_inputs(plan, given)
    redactor = Redactor({str(values[k]) for k, spec in plan.inputs.items()
                         if spec.secret and values.get(k) and k not in missing})
    incident = Incident(_store_path(store), incident_id, redactor)
    return Engine(plan, incident, values, settings, registry, drill=drill, initiator=initiator, prior=prior,
                  slack_channel=slack_channel)


def _recorded_target(settings: StanchSettings, incident: Incident) -> StanchSettings:
    """A resumed run acts on exactly what the incident's first run targeted (``target`` in
    incident.json), whoever resumes it: ``stanch resume`` points its process there first, but a
    worker taking over a dead worker's incident runs with its own environment, which may point at
    another sandbox or endpoint. This process's settings with the recorded endpoint, Slack URL,
    region and role; ``ConfigurationError`` when a recorded sandbox no longer answers (never a
    fall-through to whatever this process targets). Incidents recorded before targets were: as is."""
    # the record's own copy (with the PostgreSQL store a take-over worker may have no working copy yet)
    raw = incident.remote.get(incident.id, "incident.json") if incident.remote is not None else None
    local = incident.folder / "incident.json"
    if raw is None and local.exists():
        raw = local.read_bytes()
    meta = json.loads(raw) if raw else {}
    if not isinstance(meta, dict) or "target" not in meta:
        return settings
    target, _env = reattach(meta, None, None)
    update = {"aws_endpoint_url": target.aws_endpoint_url, "slack_base_url": target.slack_base_url,
              "aws_region": target.region, "assume_role_name": target.assume_role_name}
    if all(getattr(settings, k) == v for k, v in update.items()):
        return settings
    log.warning("incident %s: resuming against what its run targeted (%s), not this process's settings",
                incident.id, target.describe())
    return settings.model_copy(update=update)


def _ui_link() -> str | None:
    """This flow run's page in the Prefect UI (None when no UI URL is configured)."""
    from prefect.runtime import flow_run
    from prefect.settings import get_current_settings

    run_id, base = flow_run.get_id(), get_current_settings().ui_url
    return f"{base.rstrip('/')}/runs/flow-run/{run_id}" if run_id and base else None


def _abort_reason(exc: BaseException) -> str:
    if isinstance(exc, TerminationSignal):
        try:
            return f"stopped by {signal.Signals(exc.signal).name}"
        except ValueError:
            return f"stopped by signal {exc.signal}"
    if isinstance(exc, KeyboardInterrupt):
        return "stopped by SIGINT (Ctrl-C)"
    return error_text(exc)


def _finish(engine: Engine, outcome: str, started: float) -> Any:
    state = engine.state
    declined = dict(state.declined)
    engine.record("run.finished", data={"outcome": outcome, "failed_steps": state.failed_required(),
                                        "declined_steps": sorted(declined),
                                        "duration_s": round(time.monotonic() - started, 3)})
    pm = engine.incident.render_postmortem(engine.plan.postmortem_template)
    problem = engine.notifier.finish(outcome, pm, declined=sorted(declined))
    if problem:
        engine.record("slack.unavailable", data={"error": problem})
    engine.checkpoint("end", final=True)  # the last event: the record's end is signed
    summary = {"incident_id": engine.incident.id, "outcome": outcome, "folder": str(engine.incident.folder),
               "failed_steps": state.failed_required(), "declined_steps": sorted(declined),
               "skipped_steps": [s.id for s in engine.plan.steps if state.status[s.id] is StepStatus.SKIPPED]}
    if outcome != "succeeded":
        return Failed(message=f"run {outcome}: required step(s) failed: {', '.join(state.failed_required())}",
                      data=summary)
    if declined:
        return Completed(message=f"all required steps succeeded; approval(s) declined: {', '.join(sorted(declined))}"
                         " (they and the steps that need them were skipped)", data=summary)
    return Completed(message="all required steps succeeded", data=summary)


def label_current_run(tags: Iterable[str], name: str | None = None) -> list[str] | None:
    """Add ``tags`` (``run_labels.run_tags``) to the current flow run and give it ``name``
    (``run_labels.run_name``): one API call, none when it already has both. Tags already on the
    run (``prefect.tags(...)``, ``run_deployment(tags=…)``, deployment tags) are kept. Best
    effort: a failure is logged and never fails the run. The run's tags afterwards, or None
    outside a flow run."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return None
    have = list(ctx.flow_run.tags or [])
    wanted = have + [t for t in tags if t not in have]
    rename = name if name and name != ctx.flow_run.name else None
    if wanted == have and rename is None:
        return have
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(ctx.flow_run.id, tags=wanted, name=rename)
        ctx.flow_run.tags = wanted
        if rename:
            ctx.flow_run.name = rename
    except Exception as exc:
        log.warning("could not tag flow run %s: %s", ctx.flow_run.id, exc)
        return have
    return wanted


def _run_name() -> str:
    """The name Prefect gives a runbook run as it starts (``run_labels.run_name``), with the
    runbook file's stem for the runbook's name; ``label_current_run`` corrects it once the
    runbook is loaded if the two differ. Whoever created the run (CLI, Slack, worker, drill)."""
    from prefect.runtime import flow_run

    params = flow_run.parameters
    return run_name(Path(str(params.get("runbook_path") or "runbook")).stem, str(params.get("incident_id")),
                    drill=bool(params.get("drill")))


def _rollback_name() -> str:
    from prefect.runtime import flow_run

    return f"rollback · {flow_run.parameters.get('incident_id')}"


def _record_api(incident: Incident) -> None:
    """This attempt's Prefect API in ``incident.json`` (``prefect_api_url``, newest wins), so
    ``stanch approve`` reaches the paused run also after ``stanch resume`` started a temporary
    server of its own (bug B5: it kept the first attempt's, long gone)."""
    try:
        meta = incident.read_meta()
    except (OSError, ValueError):
        return
    url = current_api_url()
    if meta.get("prefect_api_url") != url:
        incident.write_meta({**meta, "prefect_api_url": url})


@flow(name="stanch-runbook", flow_run_name=_run_name,
      task_runner=ThreadPoolTaskRunner(max_workers=16),  # type: ignore[arg-type]
      validate_parameters=False, persist_result=False)
def run_runbook(runbook_path: str, inputs: dict[str, Any], incident_id: str, store: str,
                drill: bool = False, initiator: str = "cli", resume: bool = False,
                slack_channel: str | None = None) -> Any:
    """Run a runbook end to end for one incident; the final state comes from the steps.

    ``resume=True`` continues an earlier attempt of the same incident: steps and fan-out items
    that already succeeded (per its timeline) are not repeated. If the run fails or is aborted
    (Ctrl-C, cancellation), the compensations of completed steps run in reverse order."""
    prior = None
    if resume:
        prior = prior_progress(Incident(_store_path(store), incident_id).events())
    engine = _prepare(runbook_path, inputs, incident_id, store, drill, initiator, prior, slack_channel)
    plan, incident = engine.plan, engine.incident
    label_current_run(run_tags(plan.name, plan.runbook.severity, drill=drill,
                               extra=[incident_tag(incident_id), *engine.settings.extra_run_tags]),
                      name=run_name(plan.name, incident_id, drill=drill))
    shown_inputs = public_inputs(plan, engine.inputs)  # secret inputs only as their marker
    incident.write_plan(plan.to_json() | {"incident_id": incident_id, "inputs": shown_inputs, "drill": drill})
    if resume and engine.prior.runs:
        engine.record("run.resumed", actor=initiator, data={
            "incident_id": incident_id, "already_done": sorted(engine.prior.steps),
            "target": RunTarget.of(engine.settings, drill=drill).model_dump(),
            "items_done": {k: sorted(v) for k, v in engine.prior.items.items()}})
        _record_api(incident)
    else:
        incident.write_meta({"id": incident_id, "runbook": plan.name, "runbook_path": str(plan.source),
                             "inputs": shown_inputs, "drill": drill, "initiator": initiator,
                             "target": RunTarget.of(engine.settings, drill=drill).model_dump(),
                             "created_at": datetime.now(UTC).isoformat(), "prefect_api_url": current_api_url()})
        engine.record("run.started", actor=initiator, data={
            "incident_id": incident_id, "runbook": plan.name, "title": plan.runbook.title,
            "severity": plan.runbook.severity, "inputs": shown_inputs, "drill": drill})
    engine.notifier.run_link = _ui_link()
    if engine.notifier.run_link is None:  # the embedded temporary server: its address dies with the command
        engine.notifier.run_link_note = NO_RUN_LINK
    problem = engine.notifier.start()
    if problem:
        engine.record("slack.unavailable", data={"error": problem})
    started = time.monotonic()
    try:
        state = engine.run()
    except BaseException as exc:  # Ctrl-C, SIGTERM, cancellation, a bug: undo what was done, say so, re-raise
        engine.record("run.aborted", data={"error": _abort_reason(exc)})
        engine.compensate()
        _finish(engine, "aborted", started)
        raise
    outcome = state.outcome().value
    if outcome == "failed":
        engine.compensate()
    return _finish(engine, outcome, started)


@flow(name="stanch-rollback", flow_run_name=_rollback_name,
      task_runner=ThreadPoolTaskRunner(max_workers=4),  # type: ignore[arg-type]
      validate_parameters=False, persist_result=False)
def rollback_incident(incident_id: str, store: str, initiator: str = "cli") -> Any:
    """Run the compensations of every succeeded step of an incident, newest first, each once."""
    incident = Incident.open_existing(_store_path(store), incident_id)
    meta = incident.read_meta()
    prior = prior_progress(incident.events())
    engine = _prepare(meta["runbook_path"], meta["inputs"], incident.id, str(incident.folder.parent),
                      bool(meta.get("drill")), initiator, prior, strict=False)
    label_current_run(run_tags(engine.plan.name, engine.plan.runbook.severity, drill=engine.drill,
                               extra=["rollback", incident_tag(incident.id), *engine.settings.extra_run_tags]),
                      name=run_name(engine.plan.name, incident.id, drill=engine.drill, rollback=True))
    engine.record("rollback.started", actor=initiator, data={"steps": list(reversed(prior.succeeded_order))})
    failures = engine.compensate()
    undone, not_undone = rollback_coverage(engine, prior)
    outcome = rollback_outcome(failures, undone, not_undone)
    engine.record("rollback.finished", data={"outcome": outcome, "failed": failures, "undone": undone,
                                             "not_undone": not_undone})
    engine.incident.render_postmortem(engine.plan.postmortem_template)
    engine.checkpoint("rollback", final=True)
    # the header tells what the fleet is in now: nothing undone leaves it as the run left it
    if outcome != "nothing undone" and (problem := engine.notifier.rolled_back(outcome)):
        engine.record("slack.unavailable", data={"error": problem})
    summary: dict[str, Any] = {"incident_id": incident.id, "folder": str(incident.folder), "failed_steps": [],
                               "outcome": outcome, "undone": undone, "not_undone": not_undone}
    if failures:
        return Failed(message=f"{failures} compensation(s) failed", data=summary)
    if outcome == "nothing undone":
        return Failed(message="nothing could be undone: no changing step declares a compensation", data=summary)
    return Completed(message=outcome, data=summary)


def rollback_coverage(engine: Engine, prior: PriorProgress) -> tuple[list[str], list[dict[str, str]]]:
    """(steps whose compensations ran, [{step, reason}] changing steps that were not undone), newest
    first. A read-only step (its action is not mutating) without a compensation is in neither."""
    done = prior_progress(engine.incident.events())
    undone: list[str] = []
    not_undone: list[dict[str, str]] = []
    for sid in reversed(prior.succeeded_order):
        step = engine.plan.step(sid) if any(s.id == sid for s in engine.plan.steps) else None
        if step is None or step.approval is not None or (step.compensate is None and not step.mutating):
            continue
        records = done.compensation_records.get(sid)
        if step.compensate is None:
            not_undone.append({"step": sid, "reason": "no compensation declared"})
        elif records is None:
            not_undone.append({"step": sid, "reason": "no compensation recorded"})
        elif all((sid, r.get("item")) in done.compensated for r in records):
            undone.append(sid)
        else:
            not_undone.append({"step": sid, "reason": "compensation failed"})
    return undone, not_undone
