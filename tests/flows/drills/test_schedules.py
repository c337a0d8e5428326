"""A drill scheduled with `stanch drill schedule --interval` fires at least twice through the
real Prefect scheduler service and `stanch worker` (``flows.entrypoints.worker.Worker``), leaving
two scorecards and a history of two; `stanch drill schedules` lists it, `unschedule` removes it.

The session's Prefect test harness is an *ephemeral* server (no scheduler service), so this
module starts one real Prefect server with its services (UI off). What fires is the real drill
flow (``flows.drills.runner.run_drill_flow``): each firing seeds its own sandbox, runs a small
real runbook (scope, revoke CI keys) as a ``stanch run --drill`` child, and probes moto — the
scenario ``smoke`` is found in ``./runbooks/drills`` of the test's working directory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

RUNBOOK = Path(__file__).parent / "scenarios" / "revoke.runbook.yaml"
SMOKE = f"""name: smoke
title: Scheduled smoke drill
runbook: {RUNBOOK}
inputs: {{advisory: MAL-2026-2307, live_from: "2026-03-31T00:21:00Z", live_until: "2026-03-31T03:15:00Z"}}
probes:
  before: [{{probe: iam.keys_untouched}}]
  after: [{{probe: iam.ci_keys_inactive}}, {{probe: iam.keys_untouched}}]
targets: {{time_to_contain: 2m}}
"""


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
    from flows.drills.history import history
    from flows.entrypoints.cli import app
    from flows.entrypoints.worker import Worker

    (tmp_path / "runbooks" / "drills").mkdir(parents=True)
    (tmp_path / "runbooks" / "drills" / "smoke.yaml").write_text(SMOKE, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "incidents"
    monkeypatch.setenv("STANCH_STORE", str(store))
    runner = CliRunner()
    worker = Worker(name="test-sched", poll_interval=0.2, max_concurrent=2)
    worker.start()
    try:
        bad = runner.invoke(app, ["drill", "schedule", "smoke", "--cron", "not a cron"])
        assert bad.exit_code == 2 and "not a valid cron" in bad.output
        # a scenario that does not resolve or load is refused before a deployment exists
        missing = runner.invoke(app, ["drill", "schedule", "no-such-scenario", "--cron", "0 10 * * 1"])
        assert missing.exit_code == 2 and "no drill scenario named 'no-such-scenario'" in missing.output
        (tmp_path / "runbooks" / "drills" / "broken.yaml").write_text(SMOKE.replace("name: smoke", "name: broken")
                                                                      .replace("probe: iam.ci_keys_inactive",
                                                                               "probe: iam.nope"), encoding="utf-8")
        broken = runner.invoke(app, ["drill", "schedule", "broken", "--cron", "0 10 * * 1"])
        assert broken.exit_code == 2 and "broken.yaml:6:" in broken.output and "error[DR104]" in broken.output, \
            broken.output
        assert "broken" not in runner.invoke(app, ["drill", "schedules"]).output
        assert "no-such-scenario" not in runner.invoke(app, ["drill", "schedules"]).output
        res = runner.invoke(app, ["drill", "schedule", "smoke", "--interval", "3"])
        assert res.exit_code == 0, res.output
        deadline = time.monotonic() + 120
        while len(history(store, "smoke")) < 2:
            assert time.monotonic() < deadline, f"fired {len(history(store, 'smoke'))} time(s) in 120 s"
            time.sleep(0.3)
        listed = runner.invoke(app, ["drill", "schedules"])
        assert listed.exit_code == 0 and "smoke" in listed.output and "every 3 s" in listed.output, listed.output
        gone = runner.invoke(app, ["drill", "unschedule", "smoke"])
        assert gone.exit_code == 0, gone.output
        assert runner.invoke(app, ["drill", "unschedule", "smoke"]).exit_code == 1
    finally:
        worker.stop(grace=60)
    rows = history(store, "smoke")
    assert len(rows) >= 2 and len({r.incident_id for r in rows}) == len(rows)  # a new incident per firing
    for r in rows:  # real drills: probes read moto in each firing's own sandbox
        card = json.loads((store / r.incident_id / "scorecard.json").read_text())
        inactive = next(p for p in card["probes"] if p["phase"] == "after" and p["name"] == "iam.ci_keys_inactive")
        assert card["passed"] and inactive["passed"], card
        assert set(inactive["observed"]["desktop-app"]["keys"].values()) == {"Inactive"}
    assert [r.outcome for r in worker.records.values()].count("completed") >= 2
    out = runner.invoke(app, ["drill", "history", "smoke"], env={"COLUMNS": "120"})
    assert out.exit_code == 0 and out.output.count("smoke") >= 2
