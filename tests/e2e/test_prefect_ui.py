"""The Prefect UI tells the flagship's story, as on-call meets it (issue 13): a real ``prefect
server start`` with the UI, ``compromised-dependency`` run against a seeded sandbox, then

- through the Prefect API: the run's readable name and tags, a ``stanch.run`` log line for every
  step, one markdown report per step attached to that step's own task run (key
  ``<incident>-<step>``, each after the reports of the steps it needs), the skipped
  ``containment-failed`` step as a task run;
- in headless Chromium (Debian's ``chromium``; installed here when missing): the flow-run page
  names the run and every step, a step's report renders on its artifact page, and the page's
  screenshot decodes at the window size and is not blank;
- in the world the run changed: desktop-app's CI keys are Inactive in moto — exactly the keys its
  report on that page names.

One server for the module, one test: its start (~18 s the first time) overlaps with seeding the
sandbox, the CLI's imports and installing Chromium, and under ``--dist worksteal`` with the other
worker's tests. The run is the real ``stanch run compromised-dependency --drill`` in a process of
its own, as on-call starts it.
"""

from __future__ import annotations

import fcntl
import html.parser
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sandboxes import seeded_sandbox

from flows.engine.decisions import PrefectApi
from flows.entrypoints.demo import DEMO_INPUTS
from integrations.sandbox import Sandbox, observe

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "compromised-dependency.yaml"
INCIDENT = "INC-20261206-UI0001"
WINDOW = (1400, 1100)
INSTALL_LOCK = Path(tempfile.gettempdir()) / "stanch-test-chromium-install.lock"
IDLE_SERVICES = ("SCHEDULER", "LATE_RUNS", "FOREMAN", "CANCELLATION_CLEANUP", "PAUSE_EXPIRATIONS", "REPOSSESSOR",
                 "TRIGGERS", "DB_VACUUM", "CLEANUP_RECONCILER")  # not needed to record and show one run


def chromium() -> str:
    """Debian's ``chromium``, installed with apt-get when missing (one installer at a time across
    xdist workers and test sessions: a file lock); the test fails saying why when it cannot be."""
    with INSTALL_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = shutil.which("chromium")
        if found:
            return found
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in ([*sudo, "apt-get", "update"], [*sudo, "apt-get", "install", "-y", "chromium"]):
            try:
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                pytest.fail(f"cannot install Debian's chromium for the Prefect UI test: `{' '.join(cmd)}`: {exc}")
            if proc.returncode:
                pytest.fail(f"cannot install Debian's chromium for the Prefect UI test: `{' '.join(cmd)}` exited "
                            f"{proc.returncode}:\n{(proc.stderr or proc.stdout)[-1500:]}")
        found = shutil.which("chromium")
        if not found:
            pytest.fail("apt-get installed chromium, but no `chromium` is on PATH")
        return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class UiServer:
    """``prefect server start`` with the UI on a free port, its own PREFECT_HOME (SQLite)."""

    def __init__(self, home: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = PrefectApi(f"{self.url}/api")
        env = {k: v for k, v in os.environ.items()  # a database of its own, in its PREFECT_HOME
               if k != "PREFECT_API_URL" and not k.startswith(("PREFECT_API_DATABASE", "PREFECT_SERVER_DATABASE"))}
        env |= {"PREFECT_HOME": str(home), "PREFECT_UI_API_URL": self.api.url, "PREFECT_SERVER_ANALYTICS_ENABLED":
                "false", "DO_NOT_TRACK": "1", "PREFECT_SERVER_LOGGING_LEVEL": "WARNING"}
        env |= {f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false" for name in IDLE_SERVICES}
        self.log = home / "server.log"
        home.mkdir(parents=True, exist_ok=True)
        with self.log.open("w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                          "--port", str(self.port)], env=env, stdout=out, stderr=subprocess.STDOUT)

    def wait(self, timeout: float = 180.0) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"prefect server start exited {self.proc.returncode}:\n{self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.api.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        pytest.fail(f"prefect server start did not answer in {timeout:.0f}s:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    server = UiServer(tmp_path_factory.mktemp("prefect-ui") / "home")  # starts now; waited for in the test
    yield server
    server.stop()


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ui_server: UiServer) -> Iterator[Sandbox]:
    """Seeded while the server starts (no session Prefect harness needed: the run goes to ui_server)."""
    yield from seeded_sandbox(tmp_path, monkeypatch)


class _Text(html.parser.HTMLParser):
    """The visible text of a DOM dump (no scripts or styles), whitespace collapsed."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)

    @classmethod
    def of(cls, dom: str) -> str:
        parser = cls()
        parser.feed(dom)
        return " ".join(" ".join(parser.parts).split())


def browse(browser: str, urls: dict[str, str], tmp: Path, screenshot: str | None = None) -> dict[str, str]:
    """Each page's visible text after headless Chromium ran its scripts (virtual time: the SPA's
    requests complete without waiting on the clock); ``screenshot``: that page also to run.png.
    The pages load at once, each in a browser of its own."""
    procs = {}
    for name, url in urls.items():
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp / f'chromium-{name}'}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
               "--hide-scrollbars", "--virtual-time-budget=15000", "--dump-dom"]
        if name == screenshot:
            cmd.append(f"--screenshot={tmp / 'run.png'}")
        procs[name] = subprocess.Popen([*cmd, url], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                       cwd=tmp)
    pages = {}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"chromium exited {proc.returncode} on {urls[name]}"
        pages[name] = _Text.of(out)
    return pages


# The real `stanch run` in a process of its own (Prefect's events client is one per process, bound
# to the first server it meets, so a run in the test process could report its task runs to
# another); it imports while the server starts, then waits for it to answer.
CLI_ONCE_SERVER_ANSWERS = """\
import sys, time, urllib.request
import flows.engine.runtime  # the slow part, while the server starts
from flows.entrypoints.cli import main
deadline = time.monotonic() + 180
while True:
    try:
        urllib.request.urlopen(sys.argv[1] + "/health", timeout=2).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
sys.argv = ["stanch", *sys.argv[2:]]
main()
"""


def _poll(what: str, fetch: Any, ready: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if ready(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not there after {timeout:.0f}s: {value!r}"[:3000])
        time.sleep(0.2)


def test_the_prefect_ui_shows_the_flagship_run_step_by_step(ui_server: UiServer, sandbox: Sandbox,
                                                           tmp_path: Path) -> None:
    import json

    assert sandbox.state is not None and sandbox.fleet is not None
    store = tmp_path / "store"
    inputs = {**DEMO_INPUTS, "inventory": str(sandbox.state.inventory_path)}
    env = {**os.environ, "PREFECT_API_URL": ui_server.api.url, "PREFECT_UI_URL": ui_server.url,
           "STANCH_STORE": str(store), "PYTHONPATH": str(RUNBOOK.parents[1])}
    cli = subprocess.Popen([sys.executable, "-c", CLI_ONCE_SERVER_ANSWERS, ui_server.api.url, "run", str(RUNBOOK),
                            "--drill", "--incident-id", INCIDENT, "--initiator", "U0ONCALL",
                            *[a for k, v in inputs.items() for a in ("-i", f"{k}={v}")]],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        browser = chromium()  # installed if need be while the server starts and the CLI imports
        ui_server.wait()
        out, _ = cli.communicate(timeout=240)
    finally:
        cli.kill()
    assert cli.returncode == 0, out[-3000:]
    assert "contained" in out
    api = ui_server.api
    run = api.post("/flow_runs/filter", {"flow_runs": {"tags": {"all_": [f"incident:{INCIDENT}"]}}})
    assert len(run) == 1, run
    run = run[0]
    run_id = run["id"]
    plan = json.loads((store / INCIDENT / "plan.json").read_text())
    steps = [s["id"] for s in plan["steps"]]
    needs = {s["id"]: s["needs"] for s in plan["steps"]}
    assert "containment-failed" in steps

    # -- the Prefect API: name and tags, logs per step, a report per step on its own task run
    assert run["state_type"] == "COMPLETED"
    assert run["name"] == f"compromised-dependency · {INCIDENT} (drill)"
    assert {"runbook:compromised-dependency", "severity:sev1", "drill", f"incident:{INCIDENT}"} <= set(run["tags"])
    assert "live" not in run["tags"]
    logs = _poll("the run's stanch.run log lines", lambda: api.post("/logs/filter", {
        "logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC", "limit": 200}),
        lambda ls: any("run finished: succeeded" in lg["message"] for lg in ls))
    story = [lg["message"] for lg in logs if lg["name"] == "stanch.run"]
    for step in steps:
        assert any(m.startswith(f"step {step} ") for m in story), (step, story)
    assert "step containment-failed skipped: the run has not failed (when: on_failure)" in story
    task_runs = _poll("a final task run per step", lambda: api.post("/task_runs/filter", {
        "flow_runs": {"id": {"any_": [run_id]}}, "limit": 200}),
        lambda trs: len(trs) >= len(steps) and all(t["state_type"] in ("COMPLETED", "CANCELLED") for t in trs))
    task_name = {t["id"]: t["name"] for t in task_runs}
    skipped = [t for t in task_runs if t["name"] == "containment-failed"]
    assert len(skipped) == 1 and skipped[0]["state_type"] == "CANCELLED" and skipped[0]["state_name"] == "Skipped"
    artifacts = api.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}, "limit": 200})
    reports = {a["key"]: a for a in artifacts if a["type"] == "markdown" and not a["key"].endswith("-checkpoints")}
    assert sorted(reports) == sorted(f"{INCIDENT.lower()}-{s}" for s in steps)
    for step in steps:
        report = reports[f"{INCIDENT.lower()}-{step}"]
        name = task_name.get(report["task_run_id"], "")
        assert name == step or name.startswith(f"{step}["), (step, name)  # its own task run (a fan-out: an item's)
        assert "DRILL" in report["data"]
        for need in needs[step]:  # in step order: after the reports of the steps it needs
            assert report["created"] >= reports[f"{INCIDENT.lower()}-{need}"]["created"], (step, need)

    # -- the world: desktop-app's CI keys are Inactive in moto; the others untouched
    desktop = sandbox.fleet.services["desktop-app"]
    keys = observe.access_key_statuses(sandbox.url, desktop.account, desktop.ci_user)
    assert keys and set(keys.values()) == {"Inactive"}
    for name in ("web-dashboard", "billing-api"):
        svc = sandbox.fleet.services[name]
        assert set(observe.access_key_statuses(sandbox.url, svc.account, svc.ci_user).values()) == {"Active"}

    # -- headless Chromium: the flow-run page and a step's report as the UI renders them
    revoke = reports[f"{INCIDENT.lower()}-revoke-ci-keys"]
    pages = browse(browser, {"run": f"{ui_server.url}/runs/flow-run/{run_id}",
                             "report": f"{ui_server.url}/artifacts/artifact/{revoke['id']}"}, tmp_path, "run")
    assert run["name"] in pages["run"], pages["run"][:2000]
    for step in steps:  # the graph is a canvas: the names come from the Logs tab's text
        assert f"step {step} " in pages["run"], (step, pages["run"][:3000])
    assert "Deactivate the CI access keys of affected services — SUCCEEDED" in pages["report"], pages["report"][:2000]
    assert "revoke-ci-keys[desktop-app]" in pages["report"]  # the task run it is attached to
    for key_id in keys:  # the report the UI shows names exactly the keys moto now holds Inactive
        assert key_id in pages["report"], (key_id, pages["report"][:2000])

    from PIL import Image, ImageStat

    with Image.open(tmp_path / "run.png") as png:
        png.load()
        assert png.size == WINDOW
        gray = png.convert("L")
        low, high = gray.getextrema()
        assert high - low > 100 and ImageStat.Stat(gray).stddev[0] > 10, "a blank screenshot"
        assert len(png.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50
