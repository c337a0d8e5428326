"""`stanch rollback` of a runbook whose changing step declares no compensation says that nothing
was undone (and which step), exits 1, and the key really is still Inactive in moto; `stanch
incidents` then says the same outcome (it said "rolled back")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.engine.runtime import run_runbook
from flows.entrypoints.cli import app
from integrations.sandbox import Sandbox, observe

HERE = Path(__file__).parent


def test_rollback_with_no_compensation_says_nothing_undone(
        sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sandbox.fleet is not None
    desk = sandbox.fleet.services["desktop-app"]
    store = tmp_path / "home" / "incidents"
    state = run_runbook(str(HERE / "rollback_none.yaml"), {}, "INC-NONE", str(store), False, "t",
                        return_state=True)
    assert state.is_completed()
    # rollback re-applies the recorded target to os.environ: let monkeypatch restore it afterwards
    for var in ("STANCH_AWS_ENDPOINT_URL", "STANCH_SLACK_BASE_URL", "STANCH_AWS_REGION", "STANCH_ASSUME_ROLE_NAME"):
        monkeypatch.setenv(var, "placeholder")
    for var, value in (sandbox.state.environment() if sandbox.state else {}).items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("STANCH_AWS_REGION", "us-east-1")
    monkeypatch.setenv("STANCH_ASSUME_ROLE_NAME", "StanchIncidentResponder")
    result = CliRunner().invoke(app, ["rollback", "INC-NONE"])
    assert result.exit_code == 1, result.output
    assert "nothing undone" in result.output and "not undone: revoke: no compensation declared" in result.output
    assert "every compensation succeeded" not in result.output
    assert set(observe.access_key_statuses(sandbox.url, desk.account, desk.ci_user).values()) == {"Inactive"}
    listed = CliRunner().invoke(app, ["incidents", "--json"])
    assert listed.exit_code == 0, listed.output
    (row,) = [json.loads(line) for line in listed.output.splitlines() if json.loads(line)["id"] == "INC-NONE"]
    assert row["outcome"] == "nothing undone", row
