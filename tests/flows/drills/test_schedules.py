"""A drill scheduled with `stanch drill schedule --interval` fires at least twice through the
real Prefect scheduler service and `stanch worker` (``flows.entrypoints.worker.Worker``), leaving
two scorecards and a history of two; `stanch drill schedules` lists it, `unschedule` removes it.

The session's Prefect test harness is an *ephemeral* server (no scheduler service), so this
module starts one real Prefect server with its services (UI off). The drill flow here is a
trivial stand-in named ``stanch-drill`` that writes a scorecard.json (the real runner,
``flows.drills.runner.run_drill_flow``, is drill-run's and is not on this branch)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect import flow
from typer.testing import CliRunner

from flows.engine.incident import new_incident_id


@flow(name="stanch-drill")
def fake_drill(scenario: str = "clean", store: str = "") -> dict[str, Any]:
    incident_id = new_incident_id()
    folder = Path(store or os.environ["STANCH_STORE"]) / incident_id  # like the runner: STANCH_STORE by default
    folder.mkdir(parents=True)
    now = datetime.now(UTC).isoformat()
    card = {"scenario": scenario, "runbook": "compromised-dependency", "incident_id": incident_id, "drill": True,
            "started_at": now, "finished_at": now, "outcome": "succeeded", "score": 90, "passed": True,
            "time_to_contain_s": 12.5, "target_time_to_contain_s": 600, "probes": []}
    (folder / "scorecard.json").write_text(json.dumps(card))
    return card


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def scheduling_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    home = tmp_path_factory.mktemp("prefect-sched")
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "0",
           "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home}/prefect.db",
           "PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS": "1",
           "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
           "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
           "PREFECT_SERVER_SERVICES_FOREMAN_ENABLED": "false",
           "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
                             "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 90
    try:
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the Prefect server did not start"
            time.sleep(0.2)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_an_interval_schedule_fires_twice_through_the_scheduler_and_the_worker(
        scheduling_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.drills.schedules as schedules
    from flows.drills.history import history
    from flows.entrypoints.cli import app
    from flows.entrypoints.worker import Worker

    store = tmp_path / "incidents"
    monkeypatch.setattr(schedules, "drill_flow", lambda: fake_drill)
    monkeypatch.setenv("STANCH_STORE", str(store))
    runner = CliRunner()
    worker = Worker(name="test-sched", poll_interval=0.2, drill_flow=fake_drill)
    worker.start()
    try:
        bad = runner.invoke(app, ["drill", "schedule", "clean", "--cron", "not a cron"])
        assert bad.exit_code == 2 and "not a valid cron" in bad.output
        res = runner.invoke(app, ["drill", "schedule", "clean", "--interval", "2"])
        assert res.exit_code == 0, res.output
        deadline = time.monotonic() + 45
        while len(history(store, "clean")) < 2:
            assert time.monotonic() < deadline, f"fired {len(history(store, 'clean'))} time(s) in 45 s"
            time.sleep(0.3)
        listed = runner.invoke(app, ["drill", "schedules"])
        assert listed.exit_code == 0 and "clean" in listed.output and "every 2 s" in listed.output, listed.output
        gone = runner.invoke(app, ["drill", "unschedule", "clean"])
        assert gone.exit_code == 0, gone.output
        assert runner.invoke(app, ["drill", "unschedule", "clean"]).exit_code == 1
    finally:
        worker.stop(grace=20)
    rows = history(store, "clean")
    assert len(rows) >= 2 and len({r.incident_id for r in rows}) == len(rows)  # a new incident per firing
    assert [r.outcome for r in worker.records.values()].count("completed") >= 2
    out = runner.invoke(app, ["drill", "history", "clean"], env={"COLUMNS": "120"})
    assert out.exit_code == 0 and out.output.count("clean") >= 2
