"""A long-lived, in-process executor for the ``stanch-runbook/stanch`` deployment and for scheduled
drills (runs of any ``stanch-drill/<scenario>`` deployment, ``flows.drills.schedules``).

``flow.serve`` (``flows.entrypoints.deploy``) starts every flow run in a fresh ``python -m prefect.engine``
subprocess that re-imports Prefect, boto3 and the action registry: 6-8 s from a Slack command
to the first containment call on a loaded 2-core box. This worker keeps all of that imported and
runs each flow run **in a thread of its own process**, so a run starts within one poll interval.

Owns: ``Worker`` — registering/updating the deployment (``run_runbook.to_deployment(...).apply()``,
no work pool: ``run_deployment("stanch-runbook/stanch", …)`` works exactly as with ``serve``),
polling the API every ``poll_interval`` s for SCHEDULED flow runs of that deployment whose time
has come, claiming each one (``Scheduled -> Pending`` must be ACCEPTed by the server, whose
``PreventPendingTransitions`` rule makes two workers — or a worker and a ``serve`` runner — never
run the same flow run), executing it with Prefect's engine for an existing flow run
(``prefect.flow_engine.run_flow(flow, flow_run=…)``, as ``prefect.engine`` does in the
subprocess), at most ``max_concurrent`` at a time (runs waiting for an approval in
``pause_flow_run`` do not count), marking a run Crashed when the engine itself fails, and a
graceful stop (SIGTERM/SIGINT: stop polling, let running runs finish for ``grace`` s, then mark
the rest Crashed — ``stanch resume`` continues them). A ``suspend_flow_run`` resume puts the run
back to SCHEDULED ("Resuming"), so the next poll picks it up again.

Several workers (any machine) share the deployment. With a lease database (``--leases
postgresql://…`` / ``STANCH_WORKER_LEASES``; ``flows.entrypoints.leases``) each worker holds a lease
per run it executes and renews it every ``renew_interval`` s; a worker that stops renewing (killed,
machine lost) loses its runs after ``lease_ttl`` s: another worker wins the expired lease, marks the
dead run Crashed in Prefect and creates a take-over run of the same incident with ``resume=True``
(same parameters and store, run name = incident id, idempotency key ``stanch-takeover:<old run
id>``), which any worker then executes: finished steps and fan-out items are not repeated
(``flows.engine.resume``). A worker that finds a lease of its own taken (it stalled past the TTL)
calls ``on_lease_lost`` (the CLI: exit at once, so a run never executes twice). On a graceful stop
the runs still going after ``grace`` are marked Crashed and their leases expired (not released, also
when their threads end before the process does), so another worker takes them over at once.
Entry: ``python -m flows.entrypoints.worker`` / ``main(argv)``: refuses to start (exit 2, one line)
without ``PREFECT_API_URL`` (a temporary server nobody else reaches would never get a run) and when
the API does not answer within ``--register-timeout`` s or a signal stops it first.

Must not touch: the flow body (``flows.engine.runtime``), how runs are requested (``flows.entrypoints.slack``), the
``serve``-based runner (``flows.entrypoints.deploy``), Prefect's own worker/runner machinery.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

if TYPE_CHECKING:
    from collections.abc import Callable

    from prefect.client.schemas.objects import FlowRun
    from prefect.flows import Flow

    from flows.entrypoints.leases import Expired, LeaseStore

NAME = "stanch"
FLOW_NAME = "stanch-runbook"
FULL_NAME = f"{FLOW_NAME}/{NAME}"
DESCRIPTION = ("Runs any stanch runbook; parameters: runbook_path, inputs, incident_id, store, drill, initiator, "
               "slack_channel. Executed in-process by `python -m flows.entrypoints.worker`.")

log = logging.getLogger("stanch.worker")


def _load_flow() -> Flow[..., Any]:
    from flows.engine.runtime import run_runbook

    return run_runbook


def _load_drill_flow() -> Flow[..., Any] | None:
    """The scheduled-drill flow (``stanch-drill``), or None when the drill runner is not installed."""
    try:
        from flows.drills.runner import run_drill_flow  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return cast("Flow[..., Any]", run_drill_flow)


def warm_up() -> None:
    """Import what the first run would otherwise import lazily (the action registry and its
    integrations, boto3's loaders), so the first incident starts as fast as the tenth."""
    from integrations.base import default_registry

    _load_flow()
    default_registry()
    import boto3  # noqa: F401
    import botocore.session

    botocore.session.get_session().get_service_model("iam")


@dataclass
class RunRecord:
    """What happened to one flow run this worker executed (tests, logs)."""

    flow_run_id: UUID
    name: str
    outcome: str = "running"  # running | completed | failed | paused | aborted | crashed | ...
    error: str | None = None


class Worker:
    """Polls for the deployment's scheduled runs and executes them in threads of this process.

    ``start()`` runs the poll loop in a background thread (tests); ``run()`` blocks (``main``).
    Both keep the caller's ``contextvars`` (Prefect settings such as a test server's API URL)
    for the poll loop and every run."""

    def __init__(self, *, name: str = NAME, max_concurrent: int = 4, poll_interval: float = 0.3,
                 flow: Flow[..., Any] | None = None, worker_name: str | None = None,
                 clock_tolerance: float = 1.0, leases: LeaseStore | None = None, renew_interval: float = 2.0,
                 on_lease_lost: Callable[[set[UUID]], None] | None = None, drill_flow: Flow[..., Any] | None = None,
                 drills: bool = True) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be >= 1")
        self.name = name
        self.max_concurrent = max_concurrent
        self.poll_interval = poll_interval
        self.clock_tolerance = clock_tolerance  # runs due up to this many s ahead count as due (clock skew)
        self.worker_name = worker_name or f"{socket.gethostname()}:{os.getpid()}"
        self._flow = flow
        # scheduled drills: runs of any deployment of the ``stanch-drill`` flow (``stanch drill schedule``)
        self.drill_flow = (drill_flow or _load_drill_flow()) if drills else None
        self._run_flows: dict[UUID, Flow[..., Any]] = {}
        self.deployment_id: UUID | None = None
        self.records: dict[UUID, RunRecord] = {}
        self._active: dict[UUID, threading.Thread] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._loop_thread: threading.Thread | None = None
        self.leases = leases
        self.renew_interval = renew_interval
        self.on_lease_lost = on_lease_lost
        self.takeovers: list[tuple[UUID, UUID]] = []  # (dead run, take-over run) started by this worker
        self._lease_thread: threading.Thread | None = None
        self._halted = threading.Event()
        self._handed_over: set[UUID] = set()  # cut off by stop(): their expired leases are for another worker

    # -- deployment ---------------------------------------------------------------------------
    @property
    def flow(self) -> Flow[..., Any]:
        if self._flow is None:
            self._flow = _load_flow()
        return self._flow

    def register(self) -> UUID:
        """Create or update the deployment (no schedule, no work pool) and remember its id."""
        from prefect.deployments.runner import RunnerDeployment

        deployment = cast(RunnerDeployment, self.flow.to_deployment(name=self.name, description=DESCRIPTION))
        deployment_id = UUID(str(deployment.apply()))  # sync from a sync caller (async_dispatch)
        self.deployment_id = deployment_id
        log.info("deployment %s/%s registered (%s)", self.flow.name, self.name, deployment_id)
        return deployment_id

    # -- polling and claiming -----------------------------------------------------------------
    def due_runs(self, limit: int) -> list[FlowRun]:
        """SCHEDULED flow runs of the deployment whose scheduled time has come, oldest first."""
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            DeploymentFilter,
            DeploymentFilterId,
            FlowFilter,
            FlowFilterName,
            FlowRunFilter,
            FlowRunFilterDeploymentId,
            FlowRunFilterNextScheduledStartTime,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.client.schemas.sorting import FlowRunSort

        assert self.deployment_id is not None, "register() first"

        def due() -> FlowRunFilter:
            return FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
                next_scheduled_start_time=FlowRunFilterNextScheduledStartTime(
                    before_=datetime.now(UTC) + timedelta(seconds=self.clock_tolerance)))

        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_run_filter=due(),
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[self.deployment_id])),
                sort=FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC, limit=limit)
            for run in runs:
                self._run_flows[run.id] = self.flow
            if self.drill_flow is not None:
                drills = due()
                drills.deployment_id = FlowRunFilterDeploymentId(is_null_=False)
                for run in client.read_flow_runs(
                        flow_run_filter=drills,
                        flow_filter=FlowFilter(name=FlowFilterName(any_=[self.drill_flow.name])),
                        sort=FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC, limit=limit):
                    self._run_flows[run.id] = self.drill_flow
                    runs.append(run)
        return runs

    def claim(self, flow_run_id: UUID) -> bool:
        """Propose Scheduled -> Pending; True only if the server ACCEPTed it (this worker owns the run)."""
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.responses import SetStateStatus
        from prefect.states import Pending

        try:
            with get_client(sync_client=True) as client:
                result: Any = client.set_flow_run_state(flow_run_id, Pending(message=f"claimed by {self.worker_name}"))
        except Exception:
            log.exception("could not claim flow run %s", flow_run_id)
            return False
        return result.status == SetStateStatus.ACCEPT

    def _free_slots(self) -> int:
        """Free execution slots; runs paused for an approval (a thread blocked in pause_flow_run) do not count."""
        with self._lock:
            active = list(self._active)
        if len(active) < self.max_concurrent:
            return self.max_concurrent - len(active)
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        try:
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=active)))
        except Exception:
            return 0
        paused = sum(1 for r in runs if r.state is not None and r.state.is_paused())
        return max(0, self.max_concurrent - (len(active) - paused))

    def poll_once(self) -> list[UUID]:
        """One poll: claim and start as many due runs as there are free slots; the ids started."""
        slots = self._free_slots()
        if slots <= 0 or self._stop.is_set():
            return []
        started: list[UUID] = []
        for run in self.due_runs(limit=slots + 4):  # a few extra: other workers may win some claims
            if len(started) >= slots or self._stop.is_set():
                break
            with self._lock:
                if run.id in self._active:  # ours already (e.g. an in-process flow retry)
                    continue
            incident = str((run.parameters or {}).get("incident_id") or run.name)
            if self.leases is not None and not self.leases.acquire(run.id, incident, self.worker_name):
                continue  # another worker holds it
            if not self.claim(run.id):
                if self.leases is not None:
                    self.leases.release(run.id, self.worker_name)
                continue
            self._start_run(run)
            started.append(run.id)
        return started

    # -- execution ----------------------------------------------------------------------------
    def _start_run(self, run: FlowRun) -> None:
        ctx = contextvars.copy_context()
        thread = threading.Thread(target=ctx.run, args=(self._execute, run.id), name=f"stanch-run:{run.name}",
                                  daemon=True)
        with self._lock:
            self._active[run.id] = thread
            self.records[run.id] = RunRecord(run.id, str((run.parameters or {}).get("incident_id") or run.name))
        log.info("flow run %s (%s) claimed; starting in a thread", self.records[run.id].name, run.id)
        thread.start()

    def _execute(self, flow_run_id: UUID) -> None:
        from prefect.client.orchestration import get_client
        from prefect.exceptions import Abort, Pause
        from prefect.flow_engine import run_flow

        record = self.records[flow_run_id]
        try:
            with get_client(sync_client=True) as client:
                flow_run = client.read_flow_run(flow_run_id)  # fresh: state is our Pending
            state: Any = run_flow(self._run_flows.pop(flow_run_id, self.flow), flow_run=flow_run, return_type="state")
            record.outcome = str(getattr(getattr(state, "type", None), "value", "unknown")).lower()
            log.info("flow run %s finished: %s", record.name, record.outcome)
        except Pause:  # suspend_flow_run: the server resumes it as Scheduled("Resuming"); a poll picks it up
            record.outcome = "suspended"
            log.info("flow run %s suspended", record.name)
        except Abort as exc:
            record.outcome, record.error = "aborted", str(exc)
            log.info("flow run %s aborted by the orchestrator: %s", record.name, exc)
        except BaseException as exc:  # never let one run take the worker down
            record.outcome, record.error = "crashed", f"{type(exc).__name__}: {exc}"
            log.exception("flow run %s: engine failed", record.name)
            self.mark_crashed(flow_run_id, f"stanch worker: {record.error}")
        finally:
            self._finished(flow_run_id)

    def _finished(self, flow_run_id: UUID) -> None:
        """A run's thread is done with it: no longer active, then its lease released — unless
        ``stop()`` already handed it over (marked Crashed, lease expired for another worker to win)."""
        with self._idle:  # first no longer active, then no lease: a renewal never mistakes it for lost
            self._active.pop(flow_run_id, None)
            self._idle.notify_all()
            handed_over = flow_run_id in self._handed_over
        if self.leases is not None and not handed_over:
            try:  # finished, suspended or crashed here: nobody should take it over
                self.leases.release(flow_run_id, self.worker_name)
            except Exception:
                log.exception("could not release the lease of %s (it expires by itself)", flow_run_id)

    def mark_crashed(self, flow_run_id: UUID, message: str) -> None:
        """Propose Crashed unless the run already reached a final state (best effort)."""
        from prefect.client.orchestration import get_client
        from prefect.states import Crashed

        try:
            with get_client(sync_client=True) as client:
                run = client.read_flow_run(flow_run_id)
                if run.state is None or not run.state.is_final():
                    client.set_flow_run_state(flow_run_id, Crashed(message=message))
        except Exception:
            log.exception("could not mark flow run %s crashed", flow_run_id)

    # -- leases and take-over -----------------------------------------------------------------
    def lease_round(self) -> list[UUID]:
        """Renew this worker's leases (fencing if one was lost), then take over the runs of dead
        workers; the ids of the take-over runs created."""
        assert self.leases is not None
        lost = self.leases.renew(self.worker_name, self.active)
        lost &= set(self.active)  # a run that finished meanwhile released its lease: not lost
        if lost:
            log.critical("leases of %s were taken over by another worker (this worker stalled longer than the "
                         "lease TTL)", ", ".join(map(str, sorted(lost))))
            if self.on_lease_lost is not None:
                self.on_lease_lost(lost)
        if self._stop.is_set():
            return []
        created = []
        for expired in self.leases.take_expired(self.worker_name):
            new_id = self.take_over(expired)
            if new_id is not None:
                created.append(new_id)
        return created

    def take_over(self, expired: Expired) -> UUID | None:
        """The dead worker's run: mark it Crashed, create its take-over run (resume=True), drop the
        lease; the new run is executed by whichever worker polls first. None if nothing to do."""
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound
        from prefect.states import Crashed

        assert self.leases is not None
        try:
            with get_client(sync_client=True) as client:
                try:
                    run = client.read_flow_run(expired.flow_run_id)
                except ObjectNotFound:
                    run = None
                if run is None or run.deployment_id is None or (
                        run.state is not None and run.state.is_final() and not run.state.is_crashed()):
                    self.leases.release(expired.flow_run_id, self.worker_name)
                    return None
                if run.state is None or not run.state.is_crashed():
                    client.set_flow_run_state(run.id, Crashed(
                        message=f"worker {expired.previous_worker} stopped renewing its lease (expired "
                                f"{expired.expired_at.isoformat()}); taken over by {self.worker_name}"), force=True)
                params = {**(run.parameters or {}), "resume": True}
                new = client.create_flow_run_from_deployment(
                    run.deployment_id, parameters=params, name=run.name, tags=[*(run.tags or []), "takeover"],
                    idempotency_key=f"stanch-takeover:{run.id}")
        except Exception:
            log.exception("take-over of %s (%s) failed; the lease expires again and is retried",
                          expired.incident_id, expired.flow_run_id)
            return None
        self.leases.release(expired.flow_run_id, self.worker_name)
        self.takeovers.append((expired.flow_run_id, new.id))
        log.warning("incident %s: worker %s lost; run %s marked Crashed, take-over run %s created",
                    expired.incident_id, expired.previous_worker, expired.flow_run_id, new.id)
        return new.id

    def _lease_loop(self) -> None:
        """Until the worker has halted (through the shutdown grace period too): renew, take over."""
        while not self._halted.wait(self.renew_interval):
            try:
                self.lease_round()
            except Exception:
                log.exception("lease round failed; retrying")

    def _start_lease_thread(self) -> None:
        if self.leases is None or self._lease_thread is not None:
            return
        self.leases.ensure_schema()
        ctx = contextvars.copy_context()
        self._lease_thread = threading.Thread(target=ctx.run, args=(self._lease_loop,), name="stanch-worker-lease",
                                              daemon=True)
        self._lease_thread.start()

    # -- loop and lifecycle -------------------------------------------------------------------
    def run(self) -> None:
        """Register, then poll until ``stop()``; a failed poll is logged and retried."""
        if self.deployment_id is None:
            self.register()
        self._start_lease_thread()
        log.info("worker %s polling %s every %.2f s (max %d concurrent runs)", self.worker_name, FULL_NAME,
                 self.poll_interval, self.max_concurrent)
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                log.exception("poll failed; retrying")
                self._stop.wait(min(5.0, self.poll_interval * 10))
            self._stop.wait(self.poll_interval)

    def start(self) -> threading.Thread:
        """Register (in the caller's thread, so errors surface) and poll in a daemon thread."""
        if self.deployment_id is None:
            self.register()
        ctx = contextvars.copy_context()
        self._loop_thread = threading.Thread(target=ctx.run, args=(self.run,), name="stanch-worker-poll",
                                             daemon=True)
        self._loop_thread.start()
        return self._loop_thread

    def request_stop(self) -> None:
        """Stop claiming new runs (signal-safe); ``stop()`` then waits for the running ones."""
        self._stop.set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no run executes in this worker (up to ``timeout`` s; None: forever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._active:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._idle.wait(1.0 if left is None else min(left, 1.0))
        return True

    @property
    def active(self) -> list[UUID]:
        with self._lock:
            return list(self._active)

    def stop(self, grace: float | None = 30.0) -> list[UUID]:
        """Stop polling; wait up to ``grace`` s (None: forever) for running runs; mark the rest
        Crashed, expire their leases (another worker takes them over now, not after the TTL) and
        return their ids (their threads are daemons: they die with the process)."""
        self._stop.set()
        if self._loop_thread is not None and self._loop_thread is not threading.current_thread():
            self._loop_thread.join(max(5.0, self.poll_interval * 4))
        self.wait_idle(grace)
        with self._lock:
            leftover = list(self._active)
            self._handed_over.update(leftover)  # a thread ending from now on must not release these leases
        for flow_run_id in leftover:
            log.warning("flow run %s still running at shutdown: marking it Crashed", flow_run_id)
            self.mark_crashed(flow_run_id, "stanch worker stopped while the run was in progress; "
                                           + ("another worker takes it over" if self.leases is not None
                                              else "`stanch resume` continues it"))
        self._halted.set()
        if self.leases is not None and leftover:
            try:  # hand them over now rather than after the TTL
                self.leases.expire(self.worker_name, leftover)
            except Exception:
                log.exception("could not expire the leases of the runs cut off (they expire by themselves)")
        return leftover


def _api_url() -> str | None:
    """The Prefect API this process talks to (PREFECT_API_URL, from the environment or a profile)."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.entrypoints.worker",
                                     description="Execute the stanch deployment's runs in threads of this process.")
    parser.add_argument("--name", default=NAME, help="Deployment name (flow 'stanch-runbook').")
    parser.add_argument("--max-concurrent", type=int, default=4, help="Runs executing at once (approvals excluded).")
    parser.add_argument("--poll", type=float, default=0.3, help="Poll interval in seconds.")
    parser.add_argument("--grace", type=float, default=60.0,
                        help="On SIGTERM/SIGINT, seconds to let running runs finish before marking them Crashed.")
    parser.add_argument("--no-warm-up", action="store_true", help="Do not pre-import the action registry/boto3.")
    parser.add_argument("--leases", default=os.environ.get("STANCH_WORKER_LEASES", ""),
                        help="postgresql://… database for run leases (dead-worker take-over); "
                             "default $STANCH_WORKER_LEASES; empty: no take-over.")
    parser.add_argument("--lease-ttl", type=float, default=float(os.environ.get("STANCH_WORKER_LEASE_TTL", "10")),
                        help="Seconds without renewal after which another worker takes a run over.")
    parser.add_argument("--renew", type=float, default=float(os.environ.get("STANCH_WORKER_LEASE_RENEW", "2")),
                        help="Seconds between lease renewals / take-over scans.")
    parser.add_argument("--worker-name", default=None, help="Name in leases and logs (default host:pid).")
    parser.add_argument("--register-timeout", type=float, default=120.0,
                        help="Seconds to keep retrying the deployment registration while the API is not up.")
    args = parser.parse_args(argv)
    import prefect  # noqa: F401  (configures logging: its root handler prints ours too)

    api_url = _api_url()
    if not api_url:  # Prefect would start a temporary server of its own: no run would ever reach it
        print("error: stanch worker needs PREFECT_API_URL (the Prefect server that the Slack app and "
              "run_deployment use), e.g. PREFECT_API_URL=http://127.0.0.1:4200/api", file=sys.stderr, flush=True)
        return 2

    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(os.environ.get("STANCH_WORKER_LOG_LEVEL", "INFO"))

    if not args.no_warm_up:
        t0 = time.perf_counter()
        warm_up()
        log.info("warm-up done in %.2f s", time.perf_counter() - t0)
    leases = None
    if args.leases:
        from flows.entrypoints.leases import LeaseStore

        if args.renew * 2 > args.lease_ttl:
            parser.error("--renew must be at most half of --lease-ttl")
        leases = LeaseStore(args.leases, ttl=args.lease_ttl)

    def fence(lost: set[UUID]) -> None:  # another worker runs these now: never execute them twice
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(75)

    worker = Worker(name=args.name, max_concurrent=args.max_concurrent, poll_interval=args.poll, leases=leases,
                    renew_interval=args.renew, on_lease_lost=fence, worker_name=args.worker_name)
    signals = {"count": 0}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signals["count"] += 1
        if signals["count"] > 1:  # second signal: stop waiting
            log.warning("second signal: not waiting for running runs")
            raise KeyboardInterrupt
        log.info("signal %s: no new runs; waiting up to %.0f s for %d running run(s)", signum, args.grace,
                 len(worker.active))
        worker.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    deadline = time.monotonic() + args.register_timeout
    while True:  # the server may still be starting (systemd starts both; `stanch cluster up` too)
        try:
            worker.register()
            break
        except KeyboardInterrupt:  # a second signal while registering
            print(f"error: stanch worker stopped before the Prefect API at {api_url} answered", file=sys.stderr,
                  flush=True)
            return 2
        except Exception as exc:
            if worker._stop.is_set() or time.monotonic() > deadline:
                what = (f"stopped before the Prefect API at {api_url} answered" if worker._stop.is_set() else
                        f"gave up: the Prefect API at {api_url} did not answer within {args.register_timeout:g} s")
                print(f"error: stanch worker {what} ({_first_line(exc)})", file=sys.stderr, flush=True)
                return 2
            log.info("Prefect API not ready (%s); retrying", type(exc).__name__)
            time.sleep(0.5)
    with_leases = f" with leases (ttl {args.lease_ttl:.0f} s)" if leases else ""
    print(f"stanch worker {worker.worker_name}: executing {FULL_NAME} in-process{with_leases}; start runs with "
          f"run_deployment({FULL_NAME!r}, …). Ctrl-C to stop.", flush=True)
    from prefect.settings import temporary_settings

    # With leases, liveness is the lease: Prefect's flow heartbeat thread only adds ~1 s per run.
    heartbeats = temporary_settings(updates={"flows.heartbeat_frequency": None}) if leases is not None \
        else contextlib.nullcontext()
    with heartbeats:
        try:
            worker.run()
            leftover = worker.stop(grace=args.grace)
        except KeyboardInterrupt:
            leftover = worker.stop(grace=0)
    return 1 if leftover else 0


if __name__ == "__main__":
    raise SystemExit(main())
