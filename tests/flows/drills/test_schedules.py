"""A drill scheduled with `stanch drill schedule --interval` fires at least twice through the
real Prefect scheduler service and `stanch worker` (the command, in its own process), leaving
two scorecards and a history of two in the PostgreSQL store; `stanch drill schedules` lists it,
`unschedule` removes it; a scenario that does not load is refused before anything is created.

The session's Prefect test harness is an *ephemeral* server (no scheduler service), so this
module starts one real Prefect server with its services (UI off). What fires is the real drill
flow (``flows.drills.runner.run_drill_flow``): each firing seeds its own sandbox, runs a small
real runbook (scope, revoke CI keys) as a ``stanch run --drill`` child, and probes moto — the
scenario ``smoke`` is found in ``./runbooks/drills`` of the test's working directory."""

from __future__ import annotations

import json
import os
import signal
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


def _sandboxes_left(root: Path, wait: float = 5.0) -> list[int]:
    """Pids of drill sandboxes under ``root`` still alive after ``wait`` s (a sandbox stops itself
    within 0.5 s once its drill is gone); any found are stopped, so the test leaves nothing behind."""
    pids = []
    for state in root.rglob("sandbox.json"):
        try:
            pids.append(int(json.loads(state.read_text())["pid"]))
        except (OSError, ValueError, KeyError):
            continue
    deadline = time.monotonic() + wait
    def running(pid: int) -> bool:  # a zombie (exited, not yet reaped) runs no more
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
        except OSError:
            return False

    alive = [p for p in pids if running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if running(p)]
    for pid in alive:
        os.kill(pid, signal.SIGTERM)
    return alive


def _worker(server: str, cwd: Path, home: Path) -> subprocess.Popen[bytes]:
    """``stanch worker`` as its own process, as an operator starts it (output in <home>/worker.log)."""
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_API_URL": server, "STANCH_HOME": str(home), "STANCH_WORKER_LOG_LEVEL": "WARNING",
           "PYTHONPATH": str(Path(__file__).parents[3])}
    with (home / "worker.log").open("wb") as log:
        return subprocess.Popen([sys.executable, "-m", "flows.entrypoints.cli", "worker", "--poll", "0.2",
                                 "--max-concurrent", "2", "--grace", "30"], cwd=cwd, env=env, stdout=log,
                                stderr=subprocess.STDOUT)


def test_an_interval_schedule_fires_twice_through_the_scheduler_and_the_worker(
        scheduling_server: str, pg_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real chain: `stanch drill schedule` -> the Prefect scheduler -> `stanch worker` (its own
    process) -> drill flow -> `stanch run --drill`, twice; the store is PostgreSQL, so everything
    the drills wrote is read back from another STANCH_HOME (another machine's view): incidents,
    timeline verify, export, history."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterTags

    from flows.drills.history import history
    from flows.entrypoints.cli import app

    (tmp_path / "runbooks" / "drills").mkdir(parents=True)
    (tmp_path / "runbooks" / "drills" / "smoke.yaml").write_text(SMOKE, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STANCH_HOME", str(tmp_path / "worker-home"))
    runner = CliRunner()
    worker = _worker(scheduling_server, tmp_path, tmp_path / "worker-home")
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
        assert broken.exit_code == 2 and "broken.yaml:7:19: error[DR104]: unknown probe 'iam.nope'" in broken.output, \
            broken.output
        res = runner.invoke(app, ["drill", "schedule", "smoke", "--interval", "3"])
        assert res.exit_code == 0, res.output
        listed = runner.invoke(app, ["drill", "schedules"])
        assert listed.exit_code == 0 and "smoke" in listed.output and "every 3 s" in listed.output, listed.output
        assert "broken" not in listed.output and "no-such-scenario" not in listed.output
        deadline = time.monotonic() + 150
        while len(history(tmp_path, "smoke")) < 2:  # read from PostgreSQL (the folder is not the record)
            assert worker.poll() is None, (tmp_path / "worker-home" / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"fired {len(history(tmp_path, 'smoke'))} time(s) in 150 s"
            time.sleep(0.3)
        gone = runner.invoke(app, ["drill", "unschedule", "smoke"])
        assert gone.exit_code == 0, gone.output
        assert runner.invoke(app, ["drill", "unschedule", "smoke"]).exit_code == 1
    finally:
        worker.send_signal(signal.SIGTERM)  # graceful: no new runs, running ones finish
        try:
            worker.wait(40)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        left = _sandboxes_left(tmp_path)  # a firing cut off at shutdown must not leave its sandbox
        assert not left, f"drill sandboxes outlived the worker: {left}"
    with get_client(sync_client=True) as client:  # the worker executed them: completed, tagged
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["scenario:smoke"])),
                                     flow_filter=FlowFilter(name=FlowFilterName(any_=["stanch-drill"])))
    done = [r for r in runs if r.state is not None and r.state.is_completed()]
    assert len(done) >= 2, [(r.name, r.state) for r in runs]
    assert all({"drill", "scenario:smoke", "runbook:revoke-ci-keys", "severity:sev3"} <= set(r.tags) for r in done)

    # another machine (another STANCH_HOME, same STANCH_STORE): the whole record is in the database;
    # its auditor trusts the worker's signing key, as `stanch timeline key` prints it on the worker
    worker_key = runner.invoke(app, ["timeline", "key"])
    assert worker_key.exit_code == 0 and worker_key.output.startswith("ssh-ed25519 "), worker_key.output
    monkeypatch.setenv("STANCH_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("STANCH_TIMELINE_PUBKEYS", worker_key.output.strip())
    rows = history(tmp_path / "elsewhere", "smoke")
    assert len(rows) >= 2 and len({r.incident_id for r in rows}) == len(rows)  # a new incident per firing
    listed = runner.invoke(app, ["incidents", "--drill", "--json"])
    assert listed.exit_code == 0, listed.output
    incidents = {json.loads(line)["id"]: json.loads(line) for line in listed.output.splitlines() if line.strip()}
    for r in rows:  # real drills: probes read moto in each firing's own sandbox
        assert incidents[r.incident_id]["runbook"] == "revoke-ci-keys", incidents
        assert incidents[r.incident_id]["outcome"] == "succeeded" and incidents[r.incident_id]["score"] == 100
        verified = runner.invoke(app, ["timeline", "verify", r.incident_id])
        said = " ".join(verified.output.split())
        assert verified.exit_code == 0 and "hash chain verified" in said and "(from postgresql://" in said, said
        exported = runner.invoke(app, ["export", r.incident_id, str(tmp_path / "export")])
        assert exported.exit_code == 0, exported.output
        card = json.loads((tmp_path / "export" / r.incident_id / "scorecard.json").read_text())
        inactive = next(p for p in card["probes"] if p["phase"] == "after" and p["name"] == "iam.ci_keys_inactive")
        assert card["passed"] and inactive["passed"], card
        assert set(inactive["observed"]["desktop-app"]["keys"].values()) == {"Inactive"}
    out = runner.invoke(app, ["drill", "history", "smoke"], env={"COLUMNS": "120"})
    assert out.exit_code == 0 and out.output.count("smoke") >= 2, out.output
