"""Starting runs from Slack: a run Slack announces really starts, or the channel is told it
failed to start — within the bound, with an incident record ``stanch resume`` continues.

Real Bolt app over HTTP with signed requests, the Slack stand-in, real Prefect: an unreachable
API (a closed loopback port), an API that accepts and never answers, an API that creates the run
but whose first answer is lost (the retry must not create a second run), and a burst of
concurrent commands against the session's Prefect server.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import urllib3
from slack_harness import SECRET, SlackHarness, serve_app, sign
from typer.testing import CliRunner

from flows.engine.checkpoints import trusted_keys, verify_record
from flows.engine.run_labels import incident_of, incident_tag
from flows.engine.timeline import read_events
from flows.entrypoints.slack.commands import render_status
from flows.entrypoints.slack.launchers import InProcessLauncher, RunLauncher, StartPolicy
from flows.entrypoints.slack_app import SlackAppConfig, create_app
from integrations.sandbox.slack_standin import SlackStandIn
from integrations.settings import StanchSettings

CANARY = "CANARY-s3cr3t-7f1e"
NOTE = """\
name: note
title: Write a note
slack:
  channel: "#incident"
  allowed_users: [U0ONCALL]
inputs:
  message: {type: string, default: hello}
  token: {type: string, secret: true, default: none-given}
steps:
  - id: write
    action: core.note
    with: {message: "{{ inputs.message }}"}
"""


@dataclass
class LaunchEnv:
    tmp: Path
    standin: SlackStandIn
    monkeypatch: pytest.MonkeyPatch

    def app(self, launcher: RunLauncher, **config: Any) -> tuple[SlackHarness, Callable[[], None]]:
        rb = self.tmp / "rb"
        rb.mkdir(exist_ok=True)
        (rb / "note.yaml").write_text(NOTE)
        settings = StanchSettings()
        app = create_app(settings, launcher, config=SlackAppConfig(runbooks_dir=rb, **config))
        url, stop = serve_app(app)
        return SlackHarness(app, url, self.standin, settings.store_dir, launcher), stop


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LaunchEnv]:
    with SlackStandIn() as standin:
        for key, value in {"STANCH_HOME": str(tmp_path / "home"), "STANCH_SLACK_BASE_URL": standin.api_url,
                           "STANCH_SLACK_TOKEN": standin.token, "STANCH_SLACK_SIGNING_SECRET": SECRET,
                           "STANCH_SLACK_CHANNEL": "#incident"}.items():
            monkeypatch.setenv(key, value)
        yield LaunchEnv(tmp_path, standin, monkeypatch)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BlackHole:
    """A loopback TCP server that accepts every connection and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/api"

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.accepted:
            c.close()


def in_channel(h: SlackHarness, url: str, timeout: float) -> tuple[dict[str, Any], float]:
    """The first in_channel post on the command's response_url and when it arrived."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        posts = [r["body"] for r in h.standin.responses(url) if r["body"].get("response_type") == "in_channel"]
        if posts:
            return posts[0], time.monotonic()
        time.sleep(0.02)
    raise AssertionError(f"nothing in the channel after {timeout}s: {h.standin.responses(url)}")


def _kinds(folder: Path) -> list[str]:
    return [str(e["kind"]) for e in read_events(folder / "timeline.jsonl")]


def test_prefect_down_is_reported_failed_to_start_and_resume_starts_it(
        env: LaunchEnv, prefect_server: None, caplog: pytest.LogCaptureFixture) -> None:
    bound = 4.0
    launcher = InProcessLauncher(StartPolicy(deadline=bound, attempt_timeout=1.0, attempts=3, backoff=0.2),
                                 api_url=f"http://127.0.0.1:{closed_port()}/api")
    h, stop = env.app(launcher, start_timeout=bound)
    stanch_log = logging.getLogger("stanch")
    stanch_log.addHandler(caplog.handler)  # Prefect's logging config may stop propagation to the root
    try:
        caplog.set_level(logging.WARNING, logger="stanch")
        t0 = time.monotonic()
        resp, url = h.command(f"run note message=containment token={CANARY}")
        assert resp.status == 200 and time.monotonic() - t0 < 1.0
        post, at = in_channel(h, url, timeout=bound + 3)
    finally:
        stop()
        stanch_log.removeHandler(caplog.handler)
    # the bound, plus the post itself on a loaded 2-core box
    assert at - t0 <= bound + 2.0, f"reported after {at - t0:.1f}s (bound {bound}s)"
    text = post["text"]
    inc = text.split("incident `", 1)[1].split("`", 1)[0]
    assert "failed to start" in text and "started *" not in text
    assert f"stanch resume {inc} --input token=…" in text and "ConnectError" in text
    assert not any("failed to start" not in json.dumps(r["body"]) and r["body"].get("response_type") == "in_channel"
                   for r in h.standin.responses(url)), "a 'started' announcement was posted"
    assert launcher.threads == []  # nothing executes

    folder = h.store / inc
    meta = json.loads((folder / "incident.json").read_text())
    assert meta["runbook"] == "note" and meta["initiator"] == "slack:U0ONCALL"
    assert _kinds(folder) == ["run.start_failed", "checkpoint.signed"]  # the failed start is signed, too
    signed = verify_record(folder / "timeline.jsonl", trusted_keys(StanchSettings()))
    assert signed.ok and signed.signed, signed
    failed = next(iter(read_events(folder / "timeline.jsonl")))
    assert 2 <= failed["data"]["attempts"] <= 3  # retried, bounded (a loaded box may fit only two in 4 s)
    everything = "".join(p.read_text() for p in folder.rglob("*") if p.is_file()) + caplog.text + json.dumps(
        h.standin.calls()) + json.dumps(h.standin.responses(url))
    assert CANARY not in everything
    assert any(r.levelno == logging.ERROR and "failed to start" in r.getMessage() for r in caplog.records)

    assert "failed to start" in render_status(h.store, inc)  # what `/stanch status INC` answers

    # the exact command the message gave, against a working Prefect: the run starts and completes
    from flows.entrypoints.cli import app as cli

    result = CliRunner().invoke(cli, ["resume", inc, "--input", f"token={CANARY}"])
    assert result.exit_code == 0, result.output
    kinds = _kinds(folder)
    assert kinds[0] == "run.start_failed" and "run.started" in kinds
    assert next(e for e in read_events(folder / "timeline.jsonl")
                if e["kind"] == "run.finished")["data"]["outcome"] == "succeeded"
    assert any(inc in json.dumps(c["params"]) for c in h.standin.calls("chat.postMessage"))  # incident thread


def test_hanging_api_times_out_is_retried_and_reported(env: LaunchEnv) -> None:
    hole = BlackHole()
    bound = 3.0
    launcher = InProcessLauncher(StartPolicy(deadline=bound, attempt_timeout=0.8, attempts=3, backoff=0.1),
                                 api_url=hole.url)
    h, stop = env.app(launcher, start_timeout=bound, workers=1, max_pending=0)
    try:
        t0 = time.monotonic()
        resp, url = h.command("run note")
        assert resp.status == 200
        # the one worker is busy with the hanging start: the queue is bounded, the ack says so at once
        t1 = time.monotonic()
        busy, busy_url = h.command("run note message=second")
        assert busy.status == 200 and time.monotonic() - t1 < 1.0
        assert "busy" in json.loads(busy.data)["text"]
        post, at = in_channel(h, url, timeout=bound + 3)
    finally:
        stop()
        hole.close()
    assert at - t0 <= bound + 2.0
    assert "failed to start" in post["text"] and "no answer in time" in post["text"]
    assert len(hole.accepted) >= 2, "creation was not retried"
    assert h.standin.responses(busy_url) == []
    inc = post["text"].split("incident `", 1)[1].split("`", 1)[0]
    assert _kinds(h.store / inc) == ["run.start_failed", "checkpoint.signed"]
    assert [p.name for p in h.incidents()] == [inc]  # the refused command left nothing behind


class LosesFirstAnswer:
    """A reverse proxy to the Prefect API that forwards the first ``POST /flow_runs/`` — the server
    creates the run — and then never answers it (a lost response); everything else passes."""

    def __init__(self, upstream: str, lose_all: bool = False) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.upstream = upstream.rstrip("/")
        self.lose_all = lose_all
        self.flow_run_posts = 0
        self.release = threading.Event()
        pool = urllib3.PoolManager(retries=False)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.removeprefix("/api")
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "accept-encoding")}
                up = pool.request(self.command, proxy.upstream + path, body=body or None, headers=headers,
                                  timeout=10)
                if self.command == "POST" and (path.rstrip("/") == "/flow_runs"
                                               or path.endswith("/create_flow_run")):
                    proxy.flow_run_posts += 1
                    if proxy.flow_run_posts == 1 or proxy.lose_all:
                        proxy.release.wait(10)  # created upstream; the client never hears about it
                        return
                self.send_response(up.status)
                for k, v in up.headers.items():
                    if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(up.data)))
                self.end_headers()
                self.wfile.write(up.data)

            do_GET = do_POST = do_PATCH = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/api"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _flow_runs(incidents: list[str]) -> list[Any]:
    """The incidents' flow runs, by their ``incident:<id>`` tags (names are for people)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    with get_client(sync_client=True) as client:
        return list(client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(any_=[incident_tag(i) for i in incidents])), limit=200))


def _unsigned(kinds: list[str]) -> list[str]:
    """The kinds without the signed checkpoints (the final one may or may not be written yet)."""
    return [k for k in kinds if k != "checkpoint.signed"]


def _wait_finished(folder: Path, timeout: float = 60.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (folder / "timeline.jsonl").exists() and "run.finished" in (kinds := _kinds(folder)):
            return kinds
        time.sleep(0.1)
    raise AssertionError(f"{folder.name} did not finish in {timeout}s")


def test_a_retry_after_a_lost_answer_creates_no_second_run(env: LaunchEnv, prefect_server: None) -> None:
    from prefect.settings import get_current_settings

    proxy = LosesFirstAnswer(str(get_current_settings().api.url))
    launcher = InProcessLauncher(StartPolicy(deadline=10, attempt_timeout=1.0, attempts=4, backoff=0.1),
                                 api_url=proxy.url)
    h, stop = env.app(launcher)
    try:
        resp, url = h.command("run note")
        assert resp.status == 200
        post, _ = in_channel(h, url, timeout=15)
        assert "failed" not in post["text"] and "started *Write a note*" in post["text"], post
        inc = post["text"].split("incident `", 1)[1].split("`", 1)[0]
        assert _unsigned(_wait_finished(h.store / inc))[-1] == "run.finished"
        launcher.join(30)
    finally:
        stop()
        proxy.close()
    assert proxy.flow_run_posts >= 2  # the first answer was lost and creation was retried
    runs = _flow_runs([inc])
    assert len(runs) == 1 and runs[0].state_type.value == "COMPLETED", runs


def test_a_burst_of_run_commands_starts_every_announced_run_once(env: LaunchEnv, prefect_server: None) -> None:
    n = 10
    # a temporary SQLite Prefect server on a loaded 2-core box answers a burst with 503s ("database is
    # locked") and multi-second stalls: the generous bound lets the retries ride them out; what is
    # tested is that every announced run runs, once, and nothing is announced that did not start
    launcher = InProcessLauncher(StartPolicy(deadline=150, attempt_timeout=20, attempts=10, max_backoff=8))
    h, stop = env.app(launcher, start_timeout=150)
    try:
        bodies = [(h.command_body(f"run note message=burst-{i}", response_url=(u := h.standin.response_url())), u)
                  for i in range(n)]
        with ThreadPoolExecutor(n) as pool:
            statuses = list(pool.map(lambda b: h.post(b[0], sign(b[0])).status, bodies))
        assert statuses == [200] * n
        # Slack retries one delivery: acked, starts nothing
        assert h.post(bodies[0][0], {**sign(bodies[0][0]), "X-Slack-Retry-Num": "1"}).status == 200
        announced = [in_channel(h, url, timeout=160)[0]["text"] for _, url in bodies]
        incidents = [t.split("incident `", 1)[1].split("`", 1)[0] for t in announced]
        assert all("started *Write a note*" in t for t in announced), announced
        for folder in (h.store / i for i in incidents):
            _wait_finished(folder, timeout=180)
        launcher.join(60)
    finally:
        stop()
    assert all("started *Write a note*" in t for t in announced), announced
    # every announcement links its flow run in the Prefect UI (under load 67 of 70 once had no link)
    assert all("/runs/flow-run/" in t for t in announced), [t for t in announced if "/runs/flow-run/" not in t]
    assert len(set(incidents)) == n
    assert sum(len(h.standin.responses(url)) for _, url in bodies) == n  # one announcement each
    assert sorted(p.name for p in h.incidents()) == sorted(incidents)
    for inc in incidents:
        kinds = _kinds(h.store / inc)
        assert kinds.count("run.started") == 1 and _unsigned(kinds)[-1] == "run.finished"
    runs = _flow_runs(incidents)
    assert sorted(incident_of(r.tags) or "" for r in runs) == sorted(incidents)  # one flow run per announcement
    assert sorted(r.name for r in runs) == sorted(f"note · {i}" for i in incidents)  # readable: runbook · incident
    assert {r.state_type.value for r in runs} == {"COMPLETED"}
    # the announcement and the incident's header message (as it stands in Slack) link that run
    run_of = {incident_of(r.tags): str(r.id) for r in runs}
    headers = {(m.get("metadata") or {}).get("event_payload", {}).get("incident"): json.dumps(m["blocks"])
               for m in h.standin.messages() if (m.get("metadata") or {}).get("event_type") == "stanch_incident"}
    for inc, text in zip(incidents, announced, strict=True):
        assert f"/runs/flow-run/{run_of[inc]}" in text, text
        assert f"/runs/flow-run/{run_of[inc]}" in headers[inc], headers.get(inc)


def test_deployment_run_created_but_never_confirmed_is_cancelled_and_reported(
        env: LaunchEnv, prefect_server: None) -> None:
    """Every create answer is lost: the server has the run, the app never hears of it. The app
    reports "failed to start", so the run must not start later behind that message (a worker
    would run it, and `stanch resume` a second time): it is cancelled while still scheduled."""
    from prefect.settings import get_current_settings

    from flows.entrypoints.slack.launchers import DeploymentLauncher
    from flows.entrypoints.worker import Worker

    Worker().register()  # the deployment exists; no worker polls it, so the run stays SCHEDULED
    proxy = LosesFirstAnswer(str(get_current_settings().api.url), lose_all=True)
    launcher = DeploymentLauncher(policy=StartPolicy(deadline=4, attempt_timeout=1.0, attempts=3, backoff=0.1),
                                  api_url=proxy.url)
    h, stop = env.app(launcher, start_timeout=4)
    try:
        resp, url = h.command("run note")
        assert resp.status == 200
        post, _ = in_channel(h, url, timeout=15)
    finally:
        stop()
        proxy.close()
    assert proxy.flow_run_posts >= 2 and "failed to start" in post["text"], post
    inc = post["text"].split("incident `", 1)[1].split("`", 1)[0]
    runs = _flow_runs([inc])
    assert len(runs) == 1, runs  # three attempts, one idempotency key: one run on the server
    assert runs[0].state_type.value == "CANCELLED"
    assert _kinds(h.store / inc) == ["run.start_failed", "checkpoint.signed"]
