"""Drill schedules on Prefect: one deployment of the ``stanch-drill`` flow per scenario.

Owns: ``schedule`` (create/replace the deployment ``stanch-drill/<scenario>`` with its own
parameters ``{"scenario": name}``, tags ``drill``/``scenario:<name>`` and one Cron or Interval
schedule; every firing is a new flow run, and the drill flow gives each a new incident id),
``list_schedules`` (with the next run time) and ``unschedule`` (deletes the deployment and its
scheduled runs). The runs are executed by ``stanch worker`` (``flows.entrypoints.worker``).
Must not touch: the drill itself (``flows.drills.runner``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from integrations.errors import InputError

if TYPE_CHECKING:
    from prefect.flows import Flow

DRILL_FLOW = "stanch-drill"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def drill_flow() -> Flow[..., Any]:
    from flows.drills.runner import run_drill_flow  # type: ignore[import-not-found,unused-ignore]

    return cast("Flow[..., Any]", run_drill_flow)


@dataclass(frozen=True)
class ScheduleInfo:
    scenario: str
    schedule: str  # "cron 0 10 * * 1 (Europe/Berlin)" | "every 3600 s"
    active: bool
    next_run: datetime | None
    deployment_id: UUID


def _check(scenario: str, cron: str | None, interval: float | None, timezone: str | None) -> None:
    """Everything a schedule can be refused for, before anything is created: the scenario must
    resolve (``./runbooks/drills``, then the bundled ones) and load — a deployment that fails at
    every firing is worse than none (``InputError``; ``RunbookError`` with located diagnostics)."""
    if not _NAME.match(scenario):
        raise InputError(f"scenario name {scenario!r}: use letters, digits, '.', '_' or '-'")
    from flows.drills.scenario import load_scenario, resolve_scenario

    load_scenario(resolve_scenario(scenario))
    if (cron is None) == (interval is None):
        raise InputError("give exactly one of --cron or --interval")
    if cron is not None:
        from prefect.client.schemas.schedules import CronSchedule

        try:
            CronSchedule(cron=cron)
        except ValueError:
            raise InputError(f"--cron {cron!r} is not a valid cron expression (e.g. \"0 10 * * 1\")") from None
    if interval is not None and interval < 1:
        raise InputError("--interval must be at least 1 second")
    if timezone is not None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InputError(f"--timezone {timezone!r} is not an IANA time zone (e.g. Europe/Berlin)") from None


def schedule(scenario: str, *, cron: str | None = None, interval: float | None = None,
             timezone: str | None = None, flow: Flow[..., Any] | None = None,
             parameters: dict[str, Any] | None = None) -> UUID:
    """Create or replace the scenario's schedule; the deployment id. Needs PREFECT_API_URL."""
    from prefect.deployments.runner import RunnerDeployment
    from prefect.schedules import Cron, Interval

    _check(scenario, cron, interval, timezone)
    sched = Cron(cron, timezone=timezone) if cron is not None else \
        Interval(timedelta(seconds=float(interval or 0)), timezone=timezone)
    flow = flow or drill_flow()
    deployment = cast(RunnerDeployment, flow.to_deployment(
        name=scenario, schedules=[sched], parameters={"scenario": scenario, **(parameters or {})},
        tags=["drill", f"scenario:{scenario}"],
        description=f"Scheduled stanch drill of scenario {scenario!r}; executed by `stanch worker`."))
    return UUID(str(deployment.apply()))


def _describe(sched: Any) -> str:
    tz = f" ({sched.timezone})" if getattr(sched, "timezone", None) else ""
    if getattr(sched, "cron", None):
        return f"cron {sched.cron}{tz}"
    if getattr(sched, "interval", None):
        return f"every {int(sched.interval.total_seconds())} s{tz}"
    return str(sched)


def list_schedules() -> list[ScheduleInfo]:
    """Every scheduled scenario with its next SCHEDULED run (None if the scheduler made none yet)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    out: list[ScheduleInfo] = []
    with get_client(sync_client=True) as client:
        deployments = client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=[DRILL_FLOW])))
        for dep in sorted(deployments, key=lambda d: d.name):
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])),
                sort=FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC, limit=1)
            scheds = dep.schedules or []
            out.append(ScheduleInfo(
                scenario=str((dep.parameters or {}).get("scenario") or dep.name),
                schedule="; ".join(_describe(s.schedule) for s in scheds) or "none",
                active=any(s.active for s in scheds) and not dep.paused,
                next_run=runs[0].next_scheduled_start_time if runs else None, deployment_id=dep.id))
    return out


def unschedule(scenario: str) -> bool:
    """Delete the scenario's deployment (and with it its scheduled runs); False if there was none."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            dep = client.read_deployment_by_name(f"{DRILL_FLOW}/{scenario}")
        except ObjectNotFound:
            return False
        client.delete_deployment(dep.id)
    return True
