"""A deployment run (the in-process worker, as the Slack deployment launcher uses it) gets a
secret input as a reference and resolves it from the worker's environment: the value is used
by the run and stored neither in the flow run's parameters nor in the incident (issue 8)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment

from flows.engine.secret_inputs import ref
from flows.entrypoints.worker import FLOW_NAME, Worker

RUNBOOK = Path(__file__).parents[1] / "engine" / "runbooks" / "secret.yaml"
SECRET = "wrk-0d9e4f-from-the-worker-env"
pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def worker(request: pytest.FixtureRequest) -> Iterator[Worker]:
    w = Worker(name="test-secrets", poll_interval=0.1)
    w.start()
    yield w
    assert w.stop(grace=20) == []


def test_a_deployment_run_resolves_a_secret_from_the_worker_environment(
        worker: Worker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STANCH_SECRET_TOKEN", SECRET)
    params = {"runbook_path": str(RUNBOOK), "inputs": {"token": ref("token")}, "incident_id": "INC-WS",
              "store": str(tmp_path), "drill": False, "initiator": "test"}
    run: Any = run_deployment(f"{FLOW_NAME}/{worker.name}", parameters=params, timeout=0, flow_run_name="INC-WS")
    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            stored = client.read_flow_run(run.id)
            if stored.state is not None and stored.state.is_final():
                break
            time.sleep(0.2)
    assert stored.state is not None and stored.state.is_failed()  # secret.yaml's second step fails on purpose
    assert stored.parameters["inputs"] == {"token": {"$secret_ref": "token"}}
    folder = tmp_path / "INC-WS"
    events = [json.loads(x) for x in (folder / "timeline.jsonl").open()]
    fail = next(e for e in events if e["kind"] == "step.failed" and e["step"] == "fail")
    assert fail["data"]["error"] == "webhook rejected token [redacted]"  # the value was used, and masked
    for p in folder.rglob("*"):
        assert not p.is_file() or SECRET.encode() not in p.read_bytes(), p
