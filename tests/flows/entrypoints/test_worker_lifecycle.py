"""``stanch worker`` start-up and stop without a Prefect server: no PREFECT_API_URL is refused,
an unreachable API is one line and exit 2 (timeout or a signal while registering), and a stop
hands the runs it cuts off to another worker (lease expired, never released)."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from typer.testing import CliRunner

from flows.entrypoints import worker as worker_mod
from flows.entrypoints.cli import app
from flows.entrypoints.leases import LeaseStore
from flows.entrypoints.worker import Worker


@pytest.fixture
def restore_signals() -> Iterator[None]:
    """``main`` installs SIGTERM/SIGINT handlers: give pytest its own back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/api"


def test_a_worker_without_prefect_api_url_refuses_to_start(restore_signals: None) -> None:
    """It used to start against a temporary Prefect server nobody else can reach."""
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        result = CliRunner().invoke(app, ["worker", "--no-warm-up"], env={"PREFECT_API_URL": ""})
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "needs PREFECT_API_URL" in lines[0], result.output


def test_an_unreachable_api_is_one_line_and_exit_2_when_registration_times_out(
        restore_signals: None, capsys: pytest.CaptureFixture[str]) -> None:
    url = _closed_port_url()
    with temporary_settings(updates={PREFECT_API_URL: url}):
        assert worker_mod.main(["--no-warm-up", "--register-timeout", "0.3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # returned, not raised: no traceback
    assert err[-1].startswith("error: stanch worker gave up") and url in err[-1], err


def test_a_signal_while_the_api_is_unreachable_is_one_line_and_exit_2(
        restore_signals: None, capsys: pytest.CaptureFixture[str]) -> None:
    """SIGTERM during the registration retries used to end in an httpx.ConnectError traceback."""
    url = _closed_port_url()
    original = signal.getsignal(signal.SIGTERM)

    def sigterm_once_main_listens() -> None:
        deadline = time.monotonic() + 60
        while signal.getsignal(signal.SIGTERM) is original and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # a registration attempt or two
        if signal.getsignal(signal.SIGTERM) is not original:
            os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=sigterm_once_main_listens, daemon=True)
    killer.start()
    with temporary_settings(updates={PREFECT_API_URL: url}):
        assert worker_mod.main(["--no-warm-up", "--register-timeout", "60"]) == 2
    killer.join(5)
    err = capsys.readouterr().err.strip().splitlines()  # returned, not raised: no traceback
    assert err[-1].startswith("error: stanch worker stopped before the Prefect API") and url in err[-1], err


def test_a_stop_hands_the_runs_it_cuts_off_to_another_worker(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the grace: each run still going is marked Crashed and its lease expired — and stays
    there for another worker to win even when the run's thread ends before the process does."""
    worker = Worker(leases=LeaseStore(pg_url, ttl=30), worker_name="w-stop", drills=False)
    assert worker.leases is not None
    crashed: list[tuple[uuid.UUID, str]] = []
    monkeypatch.setattr(worker, "mark_crashed", lambda run_id, message: crashed.append((run_id, message)))
    run, done = uuid.uuid4(), uuid.uuid4()
    for r in (run, done):
        assert worker.leases.acquire(r, f"INC-{r.hex[:4]}", "w-stop")
        worker._active[r] = threading.current_thread()
    worker._finished(done)  # finished within the grace: released, nobody takes it over
    t0 = time.monotonic()
    assert worker.stop(grace=0.2) == [run]
    assert time.monotonic() - t0 < 5
    assert [c[0] for c in crashed] == [run] and "another worker takes it over" in crashed[0][1]
    worker._finished(run)  # its thread ends after the hand-over (e.g. it saw the Crashed state)
    other = LeaseStore(pg_url, ttl=30)
    try:
        assert [e.flow_run_id for e in other.take_expired("w-other")] == [run]
        assert other.holders() == {run: "w-other"}
    finally:
        other.close()
        worker.leases.close()
