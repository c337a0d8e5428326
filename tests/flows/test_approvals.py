"""Approval steps pause a real Prefect run; decisions arrive from another thread the way the CLI
and the Slack app send them (``submit_decision`` -> resume_flow_run with typed input)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flows.approvals import submit_decision
from flows.runtime import run_runbook

HERE = Path(__file__).parent / "runbooks"
pytestmark = pytest.mark.usefixtures("prefect_server")


def _start(tmp_path: Path, incident: str) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def target() -> None:
        box["state"] = run_runbook(str(HERE / "approval.yaml"), {}, incident, str(tmp_path), False,
                                   "cli:U0ONCALL", return_state=True)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, box


def _events(folder: Path) -> list[dict[str, Any]]:
    path = folder / "timeline.jsonl"
    return [json.loads(x) for x in path.open()] if path.exists() else []


def _wait_for(folder: Path, kind: str, count: int = 1, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(1 for e in _events(folder) if e["kind"] == kind) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"no {kind} x{count} in {[e['kind'] for e in _events(folder)]}")


def test_two_person_rule_refusals_and_grant(tmp_path: Path) -> None:
    t, box = _start(tmp_path, "INC-APPROVE")
    folder = tmp_path / "INC-APPROVE"
    _wait_for(folder, "approval.requested")
    submit_decision(tmp_path, "INC-APPROVE", "approve-delete", "cli:U0OUTSIDER", True)   # not allowed
    _wait_for(folder, "approval.refused", 1)
    submit_decision(tmp_path, "INC-APPROVE", "approve-delete", "cli:U0ONCALL", True)     # the initiator
    _wait_for(folder, "approval.refused", 2)
    submit_decision(tmp_path, "INC-APPROVE", "approve-delete", "slack:U0LEAD1", True)
    _wait_for(folder, "approval.approved", 1)
    submit_decision(tmp_path, "INC-APPROVE", "approve-delete", "slack:U0LEAD1", True)    # counts once
    _wait_for(folder, "approval.refused", 3)
    submit_decision(tmp_path, "INC-APPROVE", "approve-delete", "cli:U0LEAD2", True, "log search done")
    t.join(60)
    assert box["state"].is_completed(), box["state"].message
    events = _events(folder)
    reasons = [e["data"]["reason"] for e in events if e["kind"] == "approval.refused"]
    assert "not allowed" in reasons[0] and "two-person rule" in reasons[1] and "already approved" in reasons[2]
    granted = next(e for e in events if e["kind"] == "approval.granted")
    assert granted["data"]["approved_by"] == ["slack:U0LEAD1", "cli:U0LEAD2"]
    assert "deleted after slack:U0LEAD1 and cli:U0LEAD2" in (folder / "reports" / "delete.md").read_text()


def test_deny_fails_the_step_and_skips_dependents(tmp_path: Path) -> None:
    t, box = _start(tmp_path, "INC-DENY")
    folder = tmp_path / "INC-DENY"
    _wait_for(folder, "approval.requested")
    submit_decision(tmp_path, "INC-DENY", "approve-delete", "slack:U0LEAD2", False, "not yet")
    t.join(60)
    assert box["state"].is_failed()
    kinds = [(e["kind"], e["step"]) for e in _events(folder)]
    assert ("approval.denied", "approve-delete") in kinds and ("step.skipped", "delete") in kinds
    assert "denied by slack:U0LEAD2: not yet" in (folder / "reports" / "approve-delete.md").read_text()


def test_decision_for_a_step_that_is_not_waiting_is_refused(tmp_path: Path) -> None:
    from integrations.errors import InputError

    t, _box = _start(tmp_path, "INC-WRONG")
    folder = tmp_path / "INC-WRONG"
    _wait_for(folder, "approval.requested")
    with pytest.raises(InputError, match="waits for 'approve-delete'"):
        submit_decision(tmp_path, "INC-WRONG", "delete", "cli:U0LEAD1", True)
    submit_decision(tmp_path, "INC-WRONG", "approve-delete", "cli:U0LEAD1", False)
    t.join(60)


def test_expiry_denies_and_is_recorded(tmp_path: Path) -> None:
    state = run_runbook(str(HERE / "approval-expiry.yaml"), {}, "INC-EXPIRE", str(tmp_path), False,
                        "cli:U0ONCALL", return_state=True)
    assert state.is_failed()
    events = _events(tmp_path / "INC-EXPIRE")
    assert any(e["kind"] == "approval.expired" for e in events)
    assert "approval expired after 2s" in (tmp_path / "INC-EXPIRE" / "reports" / "approve-delete.md").read_text()
