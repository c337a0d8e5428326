"""Containment under injected faults: 30 % throttling still completes; AccessDenied fails fast."""

from __future__ import annotations

import json
from pathlib import Path

from flows.engine.runtime import run_runbook
from flows.entrypoints.demo import DEMO_INPUTS
from integrations.sandbox import Sandbox, clear_faults, inject_fault, list_faults, observe

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "compromised-dependency.yaml"


def test_completes_under_30_percent_throttling(sandbox: Sandbox, tmp_path: Path) -> None:
    assert sandbox.state is not None and sandbox.fleet is not None
    inject_fault(sandbox.url, "*", status=400, code="Throttling", rate=0.3)
    state = run_runbook(str(RUNBOOK), {**DEMO_INPUTS, "inventory": str(sandbox.state.inventory_path)},
                        "INC-THROTTLE", str(tmp_path), True, "test", return_state=True)
    fired = sum(r.fired for r in list_faults(sandbox.url))
    clear_faults(sandbox.url)
    assert state.is_completed(), state.message
    assert fired > 0  # the faults really happened
    desktop = sandbox.fleet.services["desktop-app"]
    assert set(observe.access_key_statuses(sandbox.url, desktop.account, desktop.ci_user).values()) == {"Inactive"}
    assert {t for m in observe.sent_emails(sandbox.url) for t in m.to} == set(
        sandbox.fleet.audiences["desktop-users"].emails)


def test_access_denied_fails_fast_without_retries(sandbox: Sandbox, tmp_path: Path) -> None:
    assert sandbox.state is not None
    inject_fault(sandbox.url, "ImportCertificate", status=400, code="AccessDeniedException")
    state = run_runbook(str(RUNBOOK), {**DEMO_INPUTS, "inventory": str(sandbox.state.inventory_path)},
                        "INC-DENIED", str(tmp_path), True, "test", return_state=True)
    assert state.is_failed()
    folder = tmp_path / "INC-DENIED"
    events = [json.loads(x) for x in (folder / "timeline.jsonl").open()]
    assert not [e for e in events if e["kind"] == "item.retrying" and e["step"] == "rotate-signing-cert"]
    report = (folder / "reports" / "rotate-signing-cert.md").read_text()
    assert "acm:ImportCertificate" in report
    assert "SKIPPED" in (folder / "reports" / "publish-update.md").read_text()
