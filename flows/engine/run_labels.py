"""Prefect tags of the flow runs stanch creates, so the Prefect UI's runs list can be filtered.

Owns: the tag vocabulary — ``incident:<id>`` (``incident_tag``: how stanch finds an incident's
runs, so their names can be anything readable), ``runbook:<name>``, ``severity:<sev>``, ``drill`` or ``live``,
``scenario:<name>`` (drills), ``rollback`` — (``run_tags``) and ``label_current_run``, which adds
them to the flow run being executed (whatever created it: the CLI's in-process run, the Slack
launchers, the worker or ``serve`` executing a deployment run, a drill, a schedule). Tags already
on the run (from ``prefect.tags(...)``, ``run_deployment(tags=…)`` or deployment tags) are kept.
Best effort: a failure to tag is logged and never fails the run.
Must not touch: flow-run states or parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

log = logging.getLogger("stanch.labels")


def incident_tag(incident_id: str) -> str:
    """The tag every flow run of one incident carries (its runs, rollback, resumed attempts)."""
    return f"incident:{incident_id}"


def run_tags(runbook: str, severity: str | None, *, drill: bool, scenario: str | None = None,
             extra: Iterable[str] = ()) -> list[str]:
    tags = [f"runbook:{runbook}", "drill" if drill else "live"]
    if severity:
        tags.append(f"severity:{severity}")
    if scenario:
        tags.append(f"scenario:{scenario}")
    return [*tags, *extra]


def label_current_run(tags: Iterable[str]) -> list[str] | None:
    """Add ``tags`` to the current flow run (one API call, none when it already has them); the
    run's tags afterwards, or None outside a flow run."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return None
    have = list(ctx.flow_run.tags or [])
    wanted = have + [t for t in tags if t not in have]
    if wanted == have:
        return have
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(ctx.flow_run.id, tags=wanted)
        ctx.flow_run.tags = wanted
    except Exception as exc:
        log.warning("could not tag flow run %s: %s", ctx.flow_run.id, exc)
        return have
    return wanted
