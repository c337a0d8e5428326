"""Kill the worker with SIGKILL in the middle of a fan-out, resume, and prove every side effect
happened exactly once (counted as S3 object versions in moto) and the timeline chain is intact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from prefect.settings import PREFECT_API_URL
from typer.testing import CliRunner

from flows.engine.timeline import verify
from flows.entrypoints.cli import app
from integrations.aws.session import clients_for
from integrations.sandbox import Sandbox, clear_faults, inject_fault
from integrations.settings import StanchSettings

HERE = Path(__file__).parent
ACCOUNTS = ["444444444401", "444444444402", "444444444403", "444444444404", "444444444405"]


def _events(folder: Path) -> list[dict]:
    path = folder / "timeline.jsonl"
    return [json.loads(x) for x in path.open()] if path.exists() else []


def test_sigkill_mid_fan_out_then_resume_does_each_side_effect_once(sandbox: Sandbox, tmp_path: Path) -> None:
    settings = StanchSettings(aws_endpoint_url=sandbox.url)
    targets = []
    for i, account in enumerate(ACCOUNTS):
        bucket = f"release-{i}"
        clients_for(settings, account)("s3").create_bucket(Bucket=bucket)
        targets.append({"name": f"svc-{i}", "account": account, "bucket": bucket})
    # The 4th item hangs on its first (read-only) call: the worker is killed while it waits.
    inject_fault(sandbox.url, "GetObject", status=None, delay_ms=60_000, account=ACCOUNTS[3], count=1)

    home = tmp_path / "home"
    env = {**os.environ, "STANCH_HOME": str(home), "PREFECT_API_URL": str(PREFECT_API_URL.value()),
           "PREFECT_LOGGING_LEVEL": "WARNING"}
    cmd = [sys.executable, "-m", "flows.entrypoints.cli", "run", str(HERE / "crash.yaml"), "--incident-id", "INC-CRASH",
           "--input", f"targets={json.dumps(targets)}"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    folder = home / "incidents" / "INC-CRASH"
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            events = _events(folder)
            if any(e["kind"] == "item.started" and e["item"] == "svc-3" for e in events):
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        else:
            raise AssertionError(f"never reached svc-3: {[e['kind'] for e in _events(folder)]}")
        time.sleep(0.3)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    clear_faults(sandbox.url)

    before = _events(folder)
    done_before = {e["item"] for e in before if e["kind"] == "item.succeeded"}
    assert done_before == {"svc-0", "svc-1", "svc-2"}
    assert not any(e["kind"] == "run.finished" for e in before)
    assert verify(folder / "timeline.jsonl").ok  # a kill never leaves a torn line

    result = CliRunner().invoke(app, ["resume", "INC-CRASH"], env={"STANCH_HOME": str(home)})
    assert result.exit_code == 0, result.output

    events = _events(folder)
    succeeded = [e["item"] for e in events if e["kind"] == "item.succeeded"]
    assert sorted(succeeded) == [f"svc-{i}" for i in range(5)]  # each item succeeded exactly once
    assert any(e["kind"] == "step.already_done" and e["step"] == "prepare" for e in events)
    assert verify(folder / "timeline.jsonl").ok
    for t in targets:  # exactly one PutObject per bucket, counted in moto's state
        s3 = clients_for(settings, t["account"])("s3")
        versions = s3.list_object_versions(Bucket=t["bucket"], Prefix="release/latest.json").get("Versions", [])
        assert len(versions) == 1, (t, versions)
    assert "published 5" in (folder / "reports" / "after.md").read_text()
