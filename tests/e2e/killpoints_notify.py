"""Crash harness for notification windows: run or resume a stanch incident in a child process and
SIGKILL it inside a side-effect window, by a kill point armed on a sandbox server.

Reusable (the lead may merge it with the AWS-mutation harness): ``CrashHarness`` starts
``python -m flows.cli run|resume|rollback`` with the sandbox's environment, arms a kill point
(``integrations.sandbox.killpoints``) on moto or on the Slack stand-in for the child's pid, and
waits until the child is dead. The kill point fires *before* the server handles the call (the
effect did not happen) or *after* it (the effect happened, the child never saw the answer).

Needs ``STANCH_SANDBOX_KILLPOINTS=1`` in the test process (the servers run there); the
``killpoints_enabled`` fixture in the tests sets it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from prefect.settings import PREFECT_API_URL

from integrations.sandbox.killpoints import add_killpoint, clear_killpoints

__all__ = ["CrashHarness", "form_value"]


def form_value(text: str) -> str:
    """How ``text`` appears in a form-encoded AWS query request body (match SES recipients with it)."""
    return quote(text, safe="-_.~")


@dataclass
class CrashHarness:
    home: Path
    incident: str
    timeout: float = 180.0
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env = {**os.environ, "STANCH_HOME": str(self.home), "PREFECT_API_URL": str(PREFECT_API_URL.value()),
                    "PREFECT_LOGGING_LEVEL": "WARNING", **self.env}

    @property
    def folder(self) -> Path:
        return self.home / "incidents" / self.incident

    def events(self) -> list[dict[str, Any]]:
        path = self.folder / "timeline.jsonl"
        return [json.loads(x) for x in path.open()] if path.exists() else []

    def _spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.home / "logs")
        log.mkdir(parents=True, exist_ok=True)
        out = (log / f"{int(time.time() * 1000)}-{argv[0]}.log").open("wb")
        return subprocess.Popen([sys.executable, "-m", "flows.cli", *argv], env=self.env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def _wait(self, proc: subprocess.Popen[bytes]) -> int:
        try:
            return proc.wait(self.timeout)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # our own child's group, by its id
                proc.wait(10)

    def run(self, argv: list[str]) -> int:
        """Run ``stanch <argv>`` to the end; returns its exit code."""
        return self._wait(self._spawn(argv))

    def killed_at(self, argv: list[str], server: str, *, operation: str, when: Literal["before", "after"],
                  match: str | None = None, skip: int = 0) -> list[dict[str, Any]]:
        """Run ``stanch <argv>`` and SIGKILL it at the matching call on ``server`` (moto endpoint or
        Slack stand-in root URL). Asserts it was killed there; returns the timeline as it was left."""
        proc = self._spawn(argv)
        try:
            add_killpoint(server, pid=proc.pid, operation=operation, when=when, match=match, skip=skip)
            code = self._wait(proc)
        finally:
            clear_killpoints(server)
        assert code == -signal.SIGKILL, f"stanch {argv[0]} ended with {code} instead of being killed at " \
                                        f"{operation} ({when}); see {self.home / 'logs'}"
        return self.events()
