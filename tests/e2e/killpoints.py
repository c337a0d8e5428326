"""Crash a ``stanch`` process exactly inside a side-effect window, then drive it from outside.

A reusable harness for crash tests. The kill is done by a kill point armed on a sandbox server
(``integrations.sandbox.killpoints``: moto's endpoint or the Slack stand-in's root URL) for the
child's pid, so no production code knows about it. ``when`` says which window:

- ``before``: killed as the call arrives; the call never happens (the run may have recorded
  that it was about to make it);
- ``after``: the server applied the call (moto changed its state, the stand-in stored the
  message), the run is killed before the answer returns — it never learns the call succeeded;
- ``answered``: the server applied the call and sent the answer, then the run is killed — it
  got the answer but may not have recorded it.

``stanch`` commands run as real subprocesses (``python -m flows.entrypoints.cli``) against the test's Prefect
server. Needs ``STANCH_SANDBOX_KILLPOINTS=1`` (``ENV_FLAG``) in the process that serves the
sandbox — the test process: set it with ``monkeypatch.setenv(ENV_FLAG, "1")``.
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

from integrations.sandbox.killpoints import ENV_FLAG, add_killpoint, clear_killpoints

__all__ = ["ENV_FLAG", "CrashHarness", "KillPoint", "When", "events", "form_value", "run_until_killed", "stanch",
           "stanch_env"]

REPO = Path(__file__).resolve().parents[2]
When = Literal["before", "after", "answered"]


@dataclass(frozen=True)
class KillPoint:
    """SIGKILL the process at the first matching ``operation`` call (of ``service``, if given;
    whose raw body contains ``match``, if given; after ``skip`` matching calls)."""

    operation: str
    when: When = "after"
    service: str | None = None
    match: str | None = None
    skip: int = 0

    def __str__(self) -> str:
        return f"{self.operation}:{self.when}"


def form_value(text: str) -> str:
    """How ``text`` appears in a form-encoded AWS query request body (match SES recipients with it)."""
    return quote(text, safe="-_.~")


def stanch_env(home: Path, **extra: str | None) -> dict[str, str]:
    """This process's environment for a ``stanch`` subprocess: its STANCH_HOME, the test Prefect
    server; ``extra`` overrides (None removes a variable)."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "STANCH_HOME": str(home), "PREFECT_API_URL": str(PREFECT_API_URL.value()),
           "PREFECT_LOGGING_LEVEL": "WARNING"}
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _cmd(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "flows.entrypoints.cli", *args]


def stanch(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run one ``stanch`` command to its end; its output is in the result."""
    return subprocess.run(_cmd(args), env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          check=False)


def _wait(proc: subprocess.Popen[Any], timeout: float) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"stanch did not end within {timeout}s (the kill point was never reached)") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # our own child's group, by its id
            proc.wait(10)


def _killed(proc: subprocess.Popen[Any], server: str, point: KillPoint, timeout: float) -> int:
    """Arm ``point`` on ``server`` for ``proc``, wait for ``proc`` to end; returns its exit code."""
    try:
        add_killpoint(server, pid=proc.pid, operation=point.operation, when=point.when, service=point.service,
                      match=point.match, skip=point.skip)
        return _wait(proc, timeout)
    finally:
        clear_killpoints(server)


def run_until_killed(args: list[str], env: dict[str, str], server: str, point: KillPoint,
                     timeout: float = 300) -> str:
    """Start ``stanch args``, have the sandbox server SIGKILL it at ``point``; returns its output.
    Fails if the process ended any other way (the kill point was never reached)."""
    log = Path(env["STANCH_HOME"]) / "logs"
    log.mkdir(parents=True, exist_ok=True)
    path = log / f"{time.time_ns()}-{args[0]}.log"
    with path.open("wb") as out:
        proc = subprocess.Popen(_cmd(args), env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        code = _killed(proc, server, point, timeout)
    output = path.read_text(errors="replace")
    assert code == -signal.SIGKILL, f"{point}: ended with {code}, not killed there:\n{output}"
    return output


def events(folder: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The incident's timeline events (of ``kind``, if given)."""
    path = folder / "timeline.jsonl"
    found = [json.loads(x) for x in path.open()] if path.exists() else []
    return [e for e in found if kind is None or e["kind"] == kind]


@dataclass
class CrashHarness:
    """One incident in one STANCH_HOME: run/resume/rollback it, or run it until a kill point."""

    home: Path
    incident: str
    timeout: float = 180.0
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env = {**stanch_env(self.home), **self.env}

    @property
    def folder(self) -> Path:
        return self.home / "incidents" / self.incident

    def events(self) -> list[dict[str, Any]]:
        return events(self.folder)

    def run(self, argv: list[str]) -> int:
        """Run ``stanch <argv>`` to the end; returns its exit code (its output goes to ``home/logs``)."""
        done = stanch(argv, self.env, timeout=self.timeout)
        log = self.home / "logs"
        log.mkdir(parents=True, exist_ok=True)
        (log / f"{time.time_ns()}-{argv[0]}.log").write_text(done.stdout + done.stderr)
        return done.returncode

    def killed_at(self, argv: list[str], server: str, *, operation: str, when: When,
                  match: str | None = None, skip: int = 0) -> list[dict[str, Any]]:
        """Run ``stanch <argv>`` and SIGKILL it at the matching call on ``server`` (moto endpoint or
        Slack stand-in root URL). Asserts it was killed there; returns the timeline as it was left."""
        run_until_killed(argv, self.env, server, KillPoint(operation, when, match=match, skip=skip),
                         timeout=self.timeout)
        return self.events()
