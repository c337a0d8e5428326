"""How a run requested from Slack starts.

Owns: the ``RunLauncher`` protocol and its implementations —
``InProcessLauncher`` (``run_runbook`` in a background thread of the app process: tests, demo,
single-box installs), ``DeploymentLauncher`` (``run_deployment("stanch-runbook/stanch",
timeout=0, idempotency_key=…)``: the run executes wherever ``flows.deploy`` serves the
deployment, and the server itself de-duplicates a repeated key) and ``RecordingLauncher``
(records requests, starts nothing: benchmarks and unit tests).

Must not touch: the flow body (``flows.runtime``); Slack (the caller reports the result).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

DEPLOYMENT = "stanch-runbook/stanch"


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
    # values of secret inputs; ``inputs`` holds their references (flows.secret_inputs): a value
    # never goes into a flow run's parameters (Prefect's database)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class LaunchResult:
    incident_id: str
    flow_run_id: str | None = None
    duplicate: bool = False  # the key was launched before: nothing new started


class RunLauncher(Protocol):
    def launch(self, request: LaunchRequest) -> LaunchResult:
        """Start the run (or recognise a repeat of ``request.idempotency_key``); return quickly."""
        ...


def find_flow_run_id(incident_id: str, wait: float = 0.0) -> str | None:
    """The id of the flow run named after the incident on PREFECT_API_URL, polling up to ``wait`` s."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    deadline = time.monotonic() + wait
    while True:
        try:
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                    name=FlowRunFilterName(any_=[incident_id])), limit=1)
        except Exception:
            runs = []
        if runs:
            return str(runs[0].id)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


@dataclass
class InProcessLauncher:
    """``run_runbook`` in a daemon thread of this process. ``lookup_wait`` bounds how long
    ``launch`` waits to learn the flow run id (for the Prefect UI link); 0 skips the link."""

    lookup_wait: float = 3.0
    threads: list[threading.Thread] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    _keys: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def launch(self, request: LaunchRequest) -> LaunchResult:
        with self._lock:
            first = self._keys.setdefault(request.idempotency_key, request.incident_id)
        if first != request.incident_id:
            return LaunchResult(first, duplicate=True)
        thread = threading.Thread(target=self._run, args=(request,), name=f"stanch-run:{request.incident_id}",
                                  daemon=True)
        self.threads.append(thread)
        thread.start()
        flow_run_id = find_flow_run_id(request.incident_id, self.lookup_wait) if self.lookup_wait > 0 else None
        return LaunchResult(request.incident_id, flow_run_id)

    def _run(self, request: LaunchRequest) -> None:
        from flows import secret_inputs
        from flows.runtime import run_runbook

        request.store.mkdir(parents=True, exist_ok=True)
        secret_inputs.deposit(request.incident_id, request.secrets)
        try:
            state = run_runbook(str(request.runbook_path), request.inputs, request.incident_id,
                                str(request.store.resolve()), request.drill, request.initiator,
                                slack_channel=request.slack_channel, return_state=True)
            self.results[request.incident_id] = state
        except BaseException as exc:  # recorded for tests/ops; the timeline has the details
            self.results[request.incident_id] = exc
        finally:
            secret_inputs.discard(request.incident_id)

    def join(self, timeout: float | None = None) -> None:
        """Wait for every run this launcher started (tests, graceful shutdown)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in list(self.threads):
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))


@dataclass
class DeploymentLauncher:
    """``run_deployment(name, parameters, timeout=0, idempotency_key=key)``: returns in ~0.1 s;
    the same key returns the run created the first time (Slack retries start nothing)."""

    name: str = DEPLOYMENT

    def launch(self, request: LaunchRequest) -> LaunchResult:
        from prefect.deployments import run_deployment

        if request.secrets:  # the run executes elsewhere: only a reference could travel, and it has no value there
            from flows.secret_inputs import env_name
            from integrations.errors import InputError

            raise InputError("secret inputs cannot be sent to a deployment run: leave "
                             + ", ".join(sorted(request.secrets)) + " out of the command and set "
                             + ", ".join(env_name(k) for k in sorted(request.secrets))
                             + " in the worker's environment")
        params = {"runbook_path": str(request.runbook_path.resolve()), "inputs": request.inputs,
                  "incident_id": request.incident_id, "store": str(request.store.resolve()),
                  "drill": request.drill, "initiator": request.initiator,
                  "slack_channel": request.slack_channel}
        run: Any = run_deployment(self.name, parameters=params, timeout=0,
                                  idempotency_key=request.idempotency_key, flow_run_name=request.incident_id)
        first = str((run.parameters or {}).get("incident_id") or request.incident_id)
        return LaunchResult(first, str(run.id), duplicate=first != request.incident_id)


@dataclass
class RecordingLauncher:
    """Starts nothing; remembers every request (benchmarks measure the app, not the engine)."""

    requests: list[LaunchRequest] = field(default_factory=list)

    def launch(self, request: LaunchRequest) -> LaunchResult:
        duplicate = any(r.idempotency_key == request.idempotency_key for r in self.requests)
        self.requests.append(request)
        return LaunchResult(request.incident_id, duplicate=duplicate)
