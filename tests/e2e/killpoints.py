"""Crash a ``stanch`` process exactly inside a side-effect window, then drive it from outside.

A reusable harness for crash tests: ``KillPoint`` names an AWS operation and when to die —
``before_response`` (moto applied the change; the process never learns it) or ``after_response``
(the process got the response but may not have recorded it). The kill is done by the sandbox's
fault layer (``integrations.sandbox.faults``: a ``kill_pid`` rule, enabled by
``STANCH_SANDBOX_KILL_RULES=1`` in the process that serves moto), so no production code knows
about it. ``stanch`` commands run as real subprocesses (``python -m flows.cli``) against the
test's Prefect server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from integrations.sandbox import clear_faults
from integrations.sandbox.faults import KILL_RULES_ENV, inject_fault

__all__ = ["KILL_RULES_ENV", "KillPoint", "events", "run_until_killed", "stanch", "stanch_env"]

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class KillPoint:
    """SIGKILL the process at the first ``action`` call (of ``service``, if given)."""

    action: str
    when: str = "before_response"  # or "after_response"
    service: str | None = None

    def __str__(self) -> str:
        return f"{self.action}:{self.when}"


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
    return [sys.executable, "-m", "flows.cli", *args]


def stanch(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run one ``stanch`` command to its end; its output is in the result."""
    return subprocess.run(_cmd(args), env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          check=False)


def run_until_killed(args: list[str], env: dict[str, str], endpoint: str, point: KillPoint,
                     timeout: float = 300) -> str:
    """Start ``stanch args``, have the sandbox SIGKILL it at ``point``; returns its output.
    Fails if the process ended any other way (the kill point was never reached)."""
    proc = subprocess.Popen(_cmd(args), env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    rule = inject_fault(endpoint, point.action, status=None, count=1, service=point.service,
                        kill_pid=proc.pid, kill_when=point.when)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"{point}: never reached within {timeout}s:\n{out}") from None
    finally:
        clear_faults(endpoint, rule)
    assert proc.returncode == -signal.SIGKILL, f"{point}: ended with {proc.returncode}, not killed:\n{out}"
    return out


def events(folder: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The incident's timeline events (of ``kind``, if given)."""
    path = folder / "timeline.jsonl"
    found = [json.loads(x) for x in path.open()] if path.exists() else []
    return [e for e in found if kind is None or e["kind"] == kind]
