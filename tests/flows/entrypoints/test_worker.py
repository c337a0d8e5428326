"""The in-process worker against a real (temporary) Prefect server: runs requested with
``run_deployment`` execute in threads of the worker's process, once each."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.flow_runs import pause_flow_run, resume_flow_run, suspend_flow_run

from flows.entrypoints.leases import LeaseStore
from flows.entrypoints.worker import FLOW_NAME, Worker

RUNBOOK = Path(__file__).parents[1] / "engine" / "runbooks" / "branches.yaml"
pytestmark = pytest.mark.usefixtures("prefect_server")


def _params(store: Path, incident_id: str) -> dict[str, Any]:
    return {"runbook_path": str(RUNBOOK), "inputs": {}, "incident_id": incident_id, "store": str(store),
            "drill": False, "initiator": "test"}


def _wait_final(flow_run_ids: list[UUID], timeout: float = 30.0) -> dict[UUID, Any]:
    deadline = time.monotonic() + timeout
    states: dict[UUID, Any] = {}
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            states = {i: client.read_flow_run(i).state for i in flow_run_ids}
            if all(s is not None and s.is_final() for s in states.values()):
                return states
            time.sleep(0.2)
    raise AssertionError(f"flow runs not final after {timeout} s: {states}")


def _started_events(folder: Path) -> int:
    return sum(1 for e in map(json.loads, (folder / "timeline.jsonl").open()) if e["kind"] == "run.started")


@pytest.fixture
def worker(request: pytest.FixtureRequest) -> Iterator[Worker]:
    w = Worker(name=f"test-{request.node.name[:40]}", poll_interval=0.1)
    w.start()
    yield w
    assert w.stop(grace=20) == []


def test_run_deployment_executes_in_the_worker_process(worker: Worker, tmp_path: Path) -> None:
    t0 = time.monotonic()
    run: Any = run_deployment(f"{FLOW_NAME}/{worker.name}", parameters=_params(tmp_path, "INC-W-1"), timeout=0,
                              idempotency_key="w-1", flow_run_name="INC-W-1")
    assert time.monotonic() - t0 < 5
    state = _wait_final([run.id])[run.id]
    assert state.is_completed(), state.message
    assert worker.wait_idle(10)  # the thread returns just after the final state is set
    assert worker.records[run.id].outcome == "completed"  # it ran here, in a thread
    folder = tmp_path / "INC-W-1"
    assert _started_events(folder) == 1
    assert (folder / "postmortem.md").is_file() and (folder / "reports" / "end.md").is_file()
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    runbook = json.loads((folder / "incident.json").read_text())["runbook"]
    with get_client(sync_client=True) as client:  # the run is tagged for the Prefect UI's filters
        tagged = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(
            all_=["live", "severity:sev2", f"runbook:{runbook}"])))
    assert run.id in [r.id for r in tagged]


def test_same_idempotency_key_starts_one_run(worker: Worker, tmp_path: Path) -> None:
    name = f"{FLOW_NAME}/{worker.name}"
    first: Any = run_deployment(name, parameters=_params(tmp_path, "INC-W-2"), timeout=0, idempotency_key="w-2")
    again: Any = run_deployment(name, parameters=_params(tmp_path, "INC-W-2b"), timeout=0, idempotency_key="w-2")
    assert again.id == first.id and again.parameters["incident_id"] == "INC-W-2"
    assert _wait_final([first.id])[first.id].is_completed() and worker.wait_idle(10)
    time.sleep(0.5)  # a few more polls: nothing else to pick up
    assert list(worker.records) == [first.id]
    assert _started_events(tmp_path / "INC-W-2") == 1 and not (tmp_path / "INC-W-2b").exists()


def test_two_workers_run_each_flow_run_exactly_once(tmp_path: Path) -> None:
    a, b = (Worker(name="test-two-workers", poll_interval=0.05, worker_name=n) for n in ("a", "b"))
    a.register()
    b.register()
    # the claim itself: two simultaneous Scheduled -> Pending proposals, one is accepted
    assert a.deployment_id is not None
    with get_client(sync_client=True) as client:
        lone = client.create_flow_run_from_deployment(a.deployment_id, parameters=_params(tmp_path, "INC-W-LONE"))
    barrier, won = threading.Barrier(2), []

    def race(w: Worker) -> None:
        barrier.wait()
        won.append(w.claim(lone.id))

    threads = [threading.Thread(target=race, args=(w,)) for w in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == [False, True]
    a.mark_crashed(lone.id, "test: claimed, never run")
    # the full loop: six runs, two workers polling at once
    ids = []
    for i in range(6):
        run: Any = run_deployment(f"{FLOW_NAME}/test-two-workers", parameters=_params(tmp_path, f"INC-W-3{i}"),
                                  timeout=0, idempotency_key=f"w-3{i}")
        ids.append(run.id)
    a.start()
    b.start()
    try:
        states = _wait_final(ids)
    finally:
        assert a.stop(grace=20) == [] and b.stop(grace=20) == []
    assert all(s.is_completed() for s in states.values())
    assert set(a.records) | set(b.records) == set(ids) and not set(a.records) & set(b.records)
    assert all(_started_events(tmp_path / f"INC-W-3{i}") == 1 for i in range(6))


@flow(name="stanch-worker-test-suspend", persist_result=False)
def suspending(counter: str) -> str:
    """Counts its executions in a file; suspends once (the key makes the second pass go through)."""
    path = Path(counter)
    path.write_text(str(int(path.read_text() or "0") + 1) if path.exists() else "1")
    suspend_flow_run(timeout=60, key="once")
    return "resumed"


def test_suspended_run_is_picked_up_again_after_resume(tmp_path: Path) -> None:
    w = Worker(name="test-suspend", poll_interval=0.1, flow=suspending)
    w.start()
    try:
        counter = tmp_path / "count"
        run: Any = run_deployment("stanch-worker-test-suspend/test-suspend", parameters={"counter": str(counter)},
                                  timeout=0)
        deadline = time.monotonic() + 20
        with get_client(sync_client=True) as client:
            while not ((state := client.read_flow_run(run.id).state) and state.is_paused()):
                assert time.monotonic() < deadline, state
                time.sleep(0.1)
        while w.active:  # the thread let go of the run (Pause): no slot is held while suspended
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert w.records[run.id].outcome == "suspended"
        resume_flow_run(run.id)
        final = _wait_final([run.id])[run.id]
        assert w.wait_idle(10)
    finally:
        assert w.stop(grace=20) == []
    assert final.is_completed(), final.message
    assert counter.read_text() == "2" and w.records[run.id].outcome == "completed"


@flow(name="stanch-worker-test-pause", persist_result=False)
def pausing() -> str:
    """Waits in pause_flow_run (in-process, as an approval does) for a resume that never comes."""
    pause_flow_run(timeout=30)
    return "resumed"


def test_a_stop_marks_a_paused_run_crashed_and_hands_it_over(pg_url: str) -> None:
    """`stanch cluster down` while a run waits for an approval: after the grace the worker marks
    it Crashed (the server accepts Paused -> Crashed) and expires its lease for another worker."""
    w = Worker(name="test-pause-stop", poll_interval=0.1, flow=pausing, leases=LeaseStore(pg_url, ttl=30),
               worker_name="w-pause")
    w.start()
    run: Any = run_deployment("stanch-worker-test-pause/test-pause-stop", timeout=0)
    deadline = time.monotonic() + 20
    with get_client(sync_client=True) as client:
        while not ((state := client.read_flow_run(run.id).state) and state.is_paused()):
            assert time.monotonic() < deadline, state
            time.sleep(0.1)
        assert w.stop(grace=0.5) == [run.id]
        state = client.read_flow_run(run.id).state
    assert state is not None and state.is_crashed() and "another worker takes it over" in (state.message or ""), state
    other = LeaseStore(pg_url, ttl=30)
    try:
        assert [e.flow_run_id for e in other.take_expired("w-next")] == [run.id]
    finally:
        other.close()
        assert w.leases is not None
        w.leases.close()
