"""A drill's own sandbox: one moto server + Slack stand-in in a child process, per drill.

Owns: ``DrillSandbox`` — starts ``python -m integrations.sandbox serve --home <drill>/sandbox``
(moto's backends are process-global, so a separate process is what keeps two drills that run at
the same time from sharing any AWS state), waits for its ``sandbox.json``, checks that every
endpoint is loopback (``integrations.urls.is_loopback``; anything else is refused), and stops it
by its pid; if this process dies first (SIGKILL, a worker cut off mid-drill), the sandbox notices
within 0.5 s and stops itself. Kill points are enabled in that server only (``STANCH_SANDBOX_KILLPOINTS=1``): it is
the drill's own, and the kill_and_resume inject needs them.

Must not touch: any sandbox but its own, any endpoint that is not loopback.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from integrations.errors import ConfigurationError, DrillSafetyError
from integrations.sandbox.state import SandboxState, read_state
from integrations.urls import is_loopback

REPO = Path(__file__).resolve().parents[2]


class DrillSandbox:
    """``with DrillSandbox(home, variant) as sb: sb.state`` — a private sandbox process."""

    def __init__(self, home: Path, variant: str | None = None, timeout: float = 60.0) -> None:
        self.home = home.resolve()
        self.variant = variant or "default"
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.state: SandboxState | None = None

    def start(self) -> DrillSandbox:
        self.home.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        env["STANCH_SANDBOX_KILLPOINTS"] = "1"
        env["STANCH_SANDBOX_EXIT_WITH_PARENT"] = "1"  # never outlives this drill (a worker shut down mid-drill)
        env.pop("STANCH_SANDBOX_SLACK_FACTORY", None)
        log = open(self.home / "sandbox.log", "ab")  # noqa: SIM115 - the child owns it
        with log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "integrations.sandbox", "serve", "--home", str(self.home),
                 "--fleet-variant", self.variant],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(self.home),
                start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (self.home / "sandbox.log").read_text(errors="replace")[-2000:]
                raise ConfigurationError(f"drill sandbox exited during start-up:\n{tail}")
            state = read_state(self.home)
            if state is not None and state.pid == self.proc.pid:
                self.state = state
                break
            time.sleep(0.05)
        else:
            self.stop()
            raise ConfigurationError(f"drill sandbox did not start within {self.timeout:.0f}s")
        for url in (self.state.moto_url, self.state.slack_url):
            if url is not None and not is_loopback(url):
                self.stop()
                raise DrillSafetyError(f"refusing a drill sandbox endpoint that is not loopback: {url}")
        return self

    @property
    def moto_url(self) -> str:
        assert self.state is not None
        return self.state.moto_url

    @property
    def slack_root(self) -> str | None:
        """The stand-in's control root (``/_fault``, ``/_calls``), from its API URL."""
        if self.state is None or not self.state.slack_url:
            return None
        url = self.state.slack_url.rstrip("/")
        return url[: -len("/api")] if url.endswith("/api") else url

    def fleet(self) -> dict[str, Any]:
        assert self.state is not None and self.state.fleet_path is not None
        data: dict[str, Any] = json.loads(self.state.fleet_path.read_text(encoding="utf-8"))
        return data

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        (self.home / "sandbox.json").unlink(missing_ok=True)
        self.proc = None

    def __enter__(self) -> DrillSandbox:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
