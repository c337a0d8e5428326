"""How a run requested from Slack starts.

Owns: the ``RunLauncher`` protocol and its implementations —
``InProcessLauncher`` (creates the flow run on the Prefect API, then executes it with Prefect's
engine in a background thread of the app process: tests, demo, single-box installs),
``DeploymentLauncher`` (creates a flow run of the ``stanch-runbook/stanch`` deployment: the run
executes wherever ``flows.entrypoints.worker`` / ``flows.entrypoints.deploy`` serves it) and ``RecordingLauncher``
(records requests, starts nothing: unit tests) — and the start contract they share:

* ``launch`` returns only once the flow run **exists** on the Prefect API (so the caller may say
  "started"), or raises ``StartError`` — never later than the request's ``not_after``.
* Creating the flow run is bounded: every attempt has its own HTTP timeout (connect, read, write
  and connection-pool wait; Prefect's client-side retries are switched off), transient failures
  (connection refused/reset, timeouts, 408/429/5xx) are retried with exponential backoff, at most
  ``StartPolicy.attempts`` times and never past the deadline. Every attempt sends the same
  idempotency key, so a retry after a lost answer returns the run the server already created
  instead of a second one.
* A run the in-process launcher created but whose execution then failed before the runbook
  recorded ``run.started`` (or that stopped without ``run.finished``) is handed to
  ``on_failure`` — the Slack app reports it; nothing is swallowed.

Must not touch: the flow body (``flows.engine.runtime``); Slack (the caller reports the result).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from flows.engine.redaction import Redactor
from flows.engine.run_labels import incident_tag, run_name
from flows.engine.timeline import read_events
from integrations.errors import StartError

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import FlowRun

DEPLOYMENT = "stanch-runbook/stanch"
log = logging.getLogger("stanch.slack.launch")


@dataclass(frozen=True)
class LaunchRequest:
    runbook_path: Path
    inputs: dict[str, Any]
    incident_id: str
    store: Path
    initiator: str
    idempotency_key: str
    drill: bool = False
    slack_channel: str | None = None  # the incident thread opens where /stanch was typed
    # values of secret inputs; ``inputs`` holds their references (flows.engine.secret_inputs): a value
    # never goes into a flow run's parameters (Prefect's database)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    not_after: float | None = None  # time.monotonic() by which the run exists or the start failed
    secret_inputs: tuple[str, ...] = ()  # given secret inputs: resume must be given them again
    redactor: Redactor = field(default_factory=Redactor, compare=False, repr=False)  # secret inputs


@dataclass(frozen=True)
class LaunchResult:
    incident_id: str
    flow_run_id: str | None = None
    duplicate: bool = False  # the key was launched before: nothing new started
    attempts: int = 1


class RunLauncher(Protocol):
    def launch(self, request: LaunchRequest) -> LaunchResult:
        """Create the run (or recognise a repeat of ``request.idempotency_key``); raise StartError
        if it could not be created by ``request.not_after``."""
        ...


# A failure after creation: (request, what happened, whether the runbook recorded run.started).
FailureHandler = Callable[[LaunchRequest, str, bool], None]


@dataclass(frozen=True)
class StartPolicy:
    """How hard a launcher tries to create a flow run (``STANCH_SLACK_START_*``)."""

    deadline: float = 30.0  # s from the request to "exists" or "failed to start"
    attempt_timeout: float = 5.0  # s per HTTP operation of one attempt
    attempts: int = 6
    backoff: float = 0.5  # s before the 2nd attempt; doubles up to max_backoff, +-25 % jitter
    max_backoff: float = 4.0
    concurrent: int = 4  # creations in flight at once per launcher (a burst must not pile onto the API)

    def delay(self, attempt: int) -> float:
        return min(self.max_backoff, self.backoff * (2 ** (attempt - 1))) * random.uniform(0.75, 1.25)


def flow_parameters(request: LaunchRequest) -> dict[str, Any]:
    """The parameters of ``flows.engine.runtime.run_runbook`` for a request (both launchers)."""
    return {"runbook_path": str(request.runbook_path.resolve()), "inputs": request.inputs,
            "incident_id": request.incident_id, "store": str(request.store.resolve()),
            "drill": request.drill, "initiator": request.initiator, "slack_channel": request.slack_channel}


def _name(request: LaunchRequest) -> str:
    """The run's readable name from its creation on (``run_labels.run_name``; the run itself
    keeps it, or corrects the runbook's name once loaded). Lookups go by the incident tag."""
    return run_name(request.runbook_path.stem, request.incident_id, drill=request.drill)


def _transient(exc: BaseException) -> bool:
    """Worth another attempt: the API was unreachable, slow or briefly unhappy."""
    import httpx
    from prefect.exceptions import ObjectNotFound

    if isinstance(exc, ObjectNotFound):
        return False
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        return code in (408, 409, 429) or code >= 500
    return isinstance(exc, httpx.TransportError | TimeoutError | ConnectionError | OSError)


def describe(exc: BaseException) -> str:
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code} from {exc.request.url.path}"
    if isinstance(exc, httpx.TimeoutException):
        return f"{type(exc).__name__}: no answer in time"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def warm_up(flow: bool = False) -> None:
    """Import what the first start would otherwise import inside its deadline (Prefect's client
    and engine, the flow module with the action registry): seconds on a loaded box."""
    import httpx  # noqa: F401
    from prefect.client.orchestration import get_client  # noqa: F401
    from prefect.client.schemas.actions import FlowRunCreate  # noqa: F401

    from integrations.base import default_registry

    default_registry()
    if flow:
        from prefect.flow_engine import run_flow  # noqa: F401

        from flows.engine.runtime import run_runbook  # noqa: F401


class ApiSession:
    """The Prefect API as the launchers use it: one sync client per (API URL, timeout), built once
    and shared by every start (building one — settings, an SSL context, a connection pool — costs
    CPU that would otherwise compete with the acks), with Prefect's own client retries off (the
    launcher's loop retries, with the idempotency key) and every HTTP operation bounded by the
    timeout (connect, read, write, waiting for a pooled connection)."""

    def __init__(self, api_url: str | None = None) -> None:
        self.api_url = api_url
        self.gate: threading.BoundedSemaphore | None = None  # set by the launcher (policy.concurrent)
        self._settings: Any = None
        self._clients: dict[float, SyncPrefectClient] = {}
        self._lock = threading.Lock()

    def _context(self) -> Any:
        import prefect.context
        from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES

        current = prefect.context.get_settings_context()
        if self._settings is None:
            updates: dict[Any, Any] = {PREFECT_CLIENT_MAX_RETRIES: 0}
            if self.api_url:
                updates[PREFECT_API_URL] = self.api_url
            self._settings = current.settings.copy_with_update(updates=updates)
        return prefect.context.SettingsContext(profile=current.profile, settings=self._settings)

    @contextmanager
    def client(self, timeout: float) -> Iterator[SyncPrefectClient]:
        import httpx
        from prefect.client.orchestration import get_client

        timeout = round(timeout, 1)
        with self._context():
            with self._lock:
                client = self._clients.get(timeout)
                if client is None:
                    client = get_client(httpx_settings={"timeout": httpx.Timeout(timeout)}, sync_client=True)
                    client.__enter__()
                    if len(self._clients) > 8:  # shortened timeouts near a deadline: keep a few
                        self._clients.pop(next(k for k in self._clients if k != timeout)).__exit__(None, None, None)
                    self._clients[timeout] = client
            yield client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.__exit__(None, None, None)
            self._clients.clear()


def create_with_retries(create: Callable[[SyncPrefectClient], FlowRun], request: LaunchRequest,
                        policy: StartPolicy, api: ApiSession) -> tuple[FlowRun, int]:
    """``create(client)`` until it returns, a permanent error, ``policy.attempts`` or the deadline
    (``request.not_after``, else ``policy.deadline`` from now). Returns (flow run, attempts)."""
    started = time.monotonic()
    deadline = request.not_after if request.not_after is not None else started + policy.deadline
    problems: list[str] = []
    attempt = 0
    while attempt < policy.attempts:
        remaining = deadline - time.monotonic()
        if remaining <= 0.05:
            break
        if api.gate is not None and not api.gate.acquire(timeout=remaining):
            break
        attempt += 1
        try:
            with api.client(min(policy.attempt_timeout, deadline - time.monotonic())) as client:
                return create(client), attempt
        except Exception as exc:
            problem = request.redactor.text(describe(exc))
            problems.append(problem)
            if not _transient(exc):
                raise StartError(f"the Prefect API refused the run: {problem}", attempts=attempt) from exc
            log.warning("slack: creating the flow run of %s failed (attempt %d/%d): %s", request.incident_id,
                        attempt, policy.attempts, problem)
        finally:
            if api.gate is not None:
                api.gate.release()
        pause = min(policy.delay(attempt), deadline - time.monotonic() - 0.05)
        if attempt < policy.attempts and pause > 0:
            time.sleep(pause)
    waited = time.monotonic() - started
    last = problems[-1] if problems else ("the deadline passed while the start waited for a free slot "
                                          "(too many starts at once)")
    raise StartError(f"could not create the flow run on the Prefect API in {waited:.1f} s "
                     f"({attempt} attempt{'s' if attempt != 1 else ''}; last: {last})", attempts=attempt)


def run_progress(store: Path, incident_id: str) -> tuple[bool, bool]:
    """(run.started recorded, run.finished recorded) for an incident folder."""
    path = store / incident_id / "timeline.jsonl"
    if not path.exists():
        return False, False
    kinds = {e.get("kind") for e in read_events(path)}
    return "run.started" in kinds or "run.resumed" in kinds, "run.finished" in kinds


def resume_command(incident_id: str, secret_inputs: list[str] | tuple[str, ...] = ()) -> str:
    """What to type to start an incident that never started (secret inputs must be given again)."""
    return " ".join([f"stanch resume {incident_id}", *(f"--input {name}=…" for name in secret_inputs)])


def record_start_failure(request: LaunchRequest, runbook: str, problem: str,
                         secret_inputs: list[str] | tuple[str, ...] = (), attempts: int = 0) -> Path:
    """Write the incident record of a run that never started: ``incident.json`` (what ``stanch
    resume`` needs: runbook path, inputs — secret ones redacted —, drill, initiator) and a
    ``run.start_failed`` timeline event. Returns the incident folder."""
    from datetime import UTC, datetime

    from flows.engine.incident import Incident

    incident = Incident(request.store, request.incident_id, request.redactor)
    incident.folder.mkdir(parents=True, exist_ok=True)
    if not (incident.folder / "incident.json").exists():
        incident.write_meta({"id": request.incident_id, "runbook": runbook,
                             "runbook_path": str(request.runbook_path.resolve()), "inputs": request.inputs,
                             "drill": request.drill, "initiator": request.initiator,
                             "slack_channel": request.slack_channel,
                             "created_at": datetime.now(UTC).isoformat()})
    try:
        incident.timeline.append("run.start_failed", actor=request.initiator, data={
            "runbook": runbook, "error": problem, "attempts": attempts,
            "resume": resume_command(request.incident_id, secret_inputs)})
        from flows.engine.checkpoints import sign_appended
        from integrations.settings import StanchSettings

        sign_appended(StanchSettings(), request.incident_id, incident.timeline, "start failed")
    finally:
        incident.timeline.close()
    return incident.folder


@dataclass
class InProcessLauncher:
    """Create the flow run (bounded, retried, idempotent), then execute it with Prefect's engine
    (``run_flow(run_runbook, flow_run=…)``) in a daemon thread of this process. ``api_url``
    overrides ``PREFECT_API_URL`` for creation *and* execution. A failure after creation goes to
    ``on_failure`` (the Slack app sets it) and the log."""

    policy: StartPolicy = field(default_factory=StartPolicy)
    api_url: str | None = None
    on_failure: FailureHandler | None = None
    api: ApiSession = field(init=False)
    threads: list[threading.Thread] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    _keys: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.api = ApiSession(self.api_url)
        self.api.gate = threading.BoundedSemaphore(self.policy.concurrent)

    def warm_up(self) -> None:
        warm_up(flow=True)
        with self.api.client(self.policy.attempt_timeout):  # built now, not in the first start
            pass

    def launch(self, request: LaunchRequest) -> LaunchResult:
        from prefect.client.schemas.actions import FlowRunCreate
        from prefect.client.schemas.objects import FlowRun, FlowRunPolicy
        from prefect.states import Pending, to_state_create

        from flows.engine.runtime import run_runbook

        with self._lock:
            first = self._keys.setdefault(request.idempotency_key, request.incident_id)
        if first != request.incident_id:
            return LaunchResult(first, duplicate=True, attempts=0)
        params = flow_parameters(request)

        def create(client: SyncPrefectClient) -> FlowRun:
            body = FlowRunCreate(
                flow_id=client.create_flow(run_runbook), flow_version=run_runbook.version,
                name=_name(request), parameters=params, idempotency_key=request.idempotency_key,
                tags=[incident_tag(request.incident_id)], state=to_state_create(Pending()),
                empirical_policy=FlowRunPolicy(retries=run_runbook.retries,
                                               retry_delay=int(run_runbook.retry_delay_seconds or 0)))
            response = client.request("POST", "/flow_runs/", json=body.model_dump(mode="json", exclude_unset=True))
            return FlowRun.model_validate(response.json())

        try:
            flow_run, attempts = create_with_retries(create, request, self.policy, self.api)
        except StartError:
            with self._lock:
                self._keys.pop(request.idempotency_key, None)
            raise
        owner = str((flow_run.parameters or {}).get("incident_id") or request.incident_id)
        if owner != request.incident_id:  # the server already had a run for this key
            return LaunchResult(owner, str(flow_run.id), duplicate=True, attempts=attempts)
        thread = threading.Thread(target=self._run, args=(request, flow_run, params),
                                  name=f"stanch-run:{request.incident_id}", daemon=True)
        self.threads.append(thread)
        thread.start()
        return LaunchResult(request.incident_id, str(flow_run.id), attempts=attempts)

    def _run(self, request: LaunchRequest, flow_run: FlowRun, params: dict[str, Any]) -> None:
        from prefect.flow_engine import run_flow
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from flows.engine import secret_inputs
        from flows.engine.runtime import run_runbook

        request.store.mkdir(parents=True, exist_ok=True)
        secret_inputs.deposit(request.incident_id, request.secrets)
        problem: str | None = None
        try:
            with temporary_settings(updates={PREFECT_API_URL: self.api_url}) if self.api_url else nullcontext():
                state: Any = run_flow(run_runbook, flow_run=flow_run, parameters=params, return_type="state")
            self.results[request.incident_id] = state
            if getattr(state, "is_crashed", lambda: False)():
                problem = f"the flow run crashed: {state.message or state.name}"
        except BaseException as exc:
            self.results[request.incident_id] = exc
            problem = describe(exc)
            log.error("slack: the run of %s failed in the engine: %s", request.incident_id,
                      request.redactor.text(_traceback(exc)))
        finally:
            secret_inputs.discard(request.incident_id)
        started, finished = run_progress(request.store, request.incident_id)
        if problem is None and not started:
            problem = "the flow run ended before the runbook started"
        elif problem is None and not finished:
            problem = "the flow run ended before the runbook finished"
        if problem is not None and (not started or not finished):
            self._report(request, request.redactor.text(problem), started)

    def _report(self, request: LaunchRequest, problem: str, started: bool) -> None:
        log.error("slack: %s %s: %s", request.incident_id, "stopped early" if started else "failed to start", problem)
        if self.on_failure is not None:
            try:
                self.on_failure(request, problem, started)
            except Exception as exc:  # the log above already has the essentials
                log.error("slack: could not report the failure of %s: %s", request.incident_id,
                          request.redactor.text(_traceback(exc)))

    def join(self, timeout: float | None = None) -> None:
        """Wait for every run this launcher started (tests, graceful shutdown)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in list(self.threads):
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))


def _traceback(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(exc)).rstrip()


@dataclass
class DeploymentLauncher:
    """A flow run of the deployment ``name`` (what ``run_deployment(timeout=0)`` does), created
    with the bounded, retried, idempotent policy: the same key returns the run created the first
    time (Slack retries and our own retries start nothing new)."""

    name: str = DEPLOYMENT
    policy: StartPolicy = field(default_factory=StartPolicy)
    api_url: str | None = None
    api: ApiSession = field(init=False)
    _deployment_id: Any = None

    def __post_init__(self) -> None:
        self.api = ApiSession(self.api_url)
        self.api.gate = threading.BoundedSemaphore(self.policy.concurrent)

    def warm_up(self) -> None:
        warm_up(flow=False)
        with self.api.client(self.policy.attempt_timeout):  # built now, not in the first start
            pass

    def launch(self, request: LaunchRequest) -> LaunchResult:
        params = flow_parameters(request)

        if request.secrets:  # the run executes elsewhere: only a reference could travel, and it has no value there
            from flows.engine.secret_inputs import env_name
            from integrations.errors import InputError

            raise InputError("secret inputs cannot be sent to a deployment run: leave "
                             + ", ".join(sorted(request.secrets)) + " out of the command and set "
                             + ", ".join(env_name(k) for k in sorted(request.secrets))
                             + " in the worker's environment")

        def create(client: SyncPrefectClient) -> FlowRun:
            if self._deployment_id is None:
                self._deployment_id = client.read_deployment_by_name(self.name).id
            return client.create_flow_run_from_deployment(
                self._deployment_id, parameters=params, idempotency_key=request.idempotency_key,
                name=_name(request), tags=[incident_tag(request.incident_id)])

        try:
            run, attempts = create_with_retries(create, request, self.policy, self.api)
        except StartError as exc:
            if isinstance(exc.__cause__, Exception) and "ObjectNotFound" in type(exc.__cause__).__name__:
                self._deployment_id = None
                raise StartError(f"deployment {self.name!r} not found on the Prefect API (is `python -m "
                                 "flows.entrypoints.worker` running?)", attempts=exc.attempts) from exc
            settled = self._settle(request, exc.attempts)
            if settled is not None:
                return settled
            raise
        first = str((run.parameters or {}).get("incident_id") or request.incident_id)
        return LaunchResult(first, str(run.id), duplicate=first != request.incident_id, attempts=attempts)


    def _settle(self, request: LaunchRequest, attempts: int) -> LaunchResult | None:
        """After giving up: the server may have created the run although no answer arrived. A
        worker must not run it behind a "failed to start" (and a ``stanch resume``): cancel it
        while it is still SCHEDULED; if a worker already took it, it did start."""
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
        from prefect.client.schemas.objects import StateType
        from prefect.states import Cancelled

        try:
            with self.api.client(min(self.policy.attempt_timeout, 3.0)) as client:
                runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                    tags=FlowRunFilterTags(all_=[incident_tag(request.incident_id)])), limit=5)
                for run in runs:
                    kind = run.state.type if run.state is not None else None
                    if kind == StateType.SCHEDULED:
                        verdict: Any = client.set_flow_run_state(
                            run.id, Cancelled(message="stanch: reported 'failed to start' in Slack"), force=False)
                        if str(getattr(verdict.status, "value", verdict.status)).upper() == "ACCEPT":
                            log.warning("slack: %s was created after all; cancelled it (reported failed to start)",
                                        request.incident_id)
                            continue
                        return LaunchResult(request.incident_id, str(run.id), attempts=attempts)
                    if kind in (StateType.PENDING, StateType.RUNNING, StateType.PAUSED, StateType.COMPLETED):
                        return LaunchResult(request.incident_id, str(run.id), attempts=attempts)
        except Exception as exc:
            log.error("slack: could not check whether the run of %s was created after all (%s); if it was, a "
                      "worker may still start it — look for flow run %s before resuming", request.incident_id,
                      request.redactor.text(describe(exc)), request.incident_id)
        return None


@dataclass
class RecordingLauncher:
    """Starts nothing; remembers every request (unit tests of the app without Prefect)."""

    requests: list[LaunchRequest] = field(default_factory=list)

    def launch(self, request: LaunchRequest) -> LaunchResult:
        duplicate = any(r.idempotency_key == request.idempotency_key for r in self.requests)
        self.requests.append(request)
        return LaunchResult(request.incident_id, duplicate=duplicate)
