"""`stanch run` told to stop actually stops: SIGTERM is handled like Ctrl-C (real process, real Prefect).

The run is a subprocess of the real CLI against the session's Prefect server; its slow step keeps
retrying a transient failure (core.fail with backoff), the test sends SIGTERM once that step is
running, and then reads the incident folder the run left behind: ``run.aborted`` saying why, the
compensation of the step that had succeeded, ``run.finished`` with outcome ``aborted``, a
timeline whose end is signed and a post-mortem — within a bound, with a non-zero exit status.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.engine.checkpoints import trusted_keys, verify_record
from integrations.settings import StanchSettings

RUNBOOK = Path(__file__).parents[1] / "engine" / "runbooks" / "slow.yaml"
STOP_WITHIN_S = 30  # compensation + post-mortem + Prefect's own shutdown, on a loaded 2-core machine


def _events(folder: Path) -> list[dict]:  # type: ignore[type-arg]
    path = folder / "timeline.jsonl"
    return [json.loads(line) for line in path.open()] if path.exists() else []


@pytest.mark.usefixtures("prefect_server")
def test_sigterm_aborts_compensates_and_exits_promptly(tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "STANCH_HOME": str(tmp_path),
           "STANCH_STORE": str(tmp_path / "incidents"), "COLUMNS": "200"}
    folder = tmp_path / "incidents" / "INC-TEST-sigterm"
    proc = subprocess.Popen([sys.executable, "-c", "from flows.entrypoints.cli import main; main()",
                             "run", str(RUNBOOK), "--incident-id", "INC-TEST-sigterm"],
                            env=env, cwd=Path(__file__).parents[3], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not any(e["kind"] == "item.retrying" and e["step"] == "slow" for e in _events(folder)):
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "the slow step never started"
            time.sleep(0.2)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=STOP_WITHIN_S)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode in (-signal.SIGTERM, 128 + signal.SIGTERM, 1), out[-3000:]
    assert took < STOP_WITHIN_S
    events = _events(folder)
    kinds = [(e["kind"], e["step"]) for e in events]
    aborted = [e for e in events if e["kind"] == "run.aborted"]
    assert len(aborted) == 1 and aborted[0]["data"]["error"] == "stopped by SIGTERM", aborted
    assert ("compensation.succeeded", "first") in kinds
    assert kinds.index(("run.aborted", None)) < kinds.index(("compensation.succeeded", "first"))
    assert ("step.succeeded", "slow") not in kinds
    assert [e["kind"] for e in events[-2:]] == ["run.finished", "checkpoint.signed"]  # the end is signed
    assert events[-2]["data"]["outcome"] == "aborted"
    signed = verify_record(folder / "timeline.jsonl", trusted_keys(StanchSettings(home=tmp_path)))
    assert signed.ok and signed.signed, signed
    assert "aborted" in (folder / "postmortem.md").read_text(encoding="utf-8")
