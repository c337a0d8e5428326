"""`stanch resume` never re-runs a finished incident; the CLI gives the temporary Prefect server
enough time to start under load. No Prefect run is started by these tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.engine.incident import Incident
from flows.entrypoints.cli import EPHEMERAL_STARTUP_TIMEOUT_S, app, prefect_defaults

runner = CliRunner()


def _incident(home: Path, outcome: str | None, *extra: str) -> str:
    inc = Incident(home / "incidents", "INC-DONE")
    inc.write_meta({"id": inc.id, "runbook": "x", "runbook_path": "/nonexistent/x.yaml", "inputs": {},
                    "drill": False, "initiator": "t"})
    inc.timeline.append("run.started")
    if outcome:
        inc.timeline.append("run.finished", data={"outcome": outcome})
    for kind in extra:
        inc.timeline.append(kind)
    return inc.id


def test_resume_of_a_succeeded_incident_says_nothing_to_do(tmp_path: Path) -> None:
    inc = _incident(tmp_path, "succeeded")
    before = (tmp_path / "incidents" / inc / "timeline.jsonl").read_text()
    result = runner.invoke(app, ["resume", inc], env={"STANCH_HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert "nothing to resume" in result.output
    assert (tmp_path / "incidents" / inc / "timeline.jsonl").read_text() == before  # nothing ran


@pytest.mark.parametrize(("outcome", "extra", "says"), [("failed", ("compensation.started",), "finished (failed)"),
                                                        ("aborted", ("compensation.started",), "finished (aborted)"),
                                                        (None, ("rollback.started",), "rolled back")])
def test_resume_of_a_failed_or_rolled_back_incident_is_refused(
        tmp_path: Path, outcome: str | None, extra: tuple[str, ...], says: str) -> None:
    inc = _incident(tmp_path, outcome, *extra)
    result = runner.invoke(app, ["resume", inc], env={"STANCH_HOME": str(tmp_path)})
    assert result.exit_code == 2, result.output
    assert f"not resuming {inc}" in result.output and says in result.output


def test_temporary_prefect_server_gets_a_longer_start_up_budget(tmp_path: Path) -> None:
    env: dict[str, str] = {"STANCH_HOME": str(tmp_path)}
    prefect_defaults(env)
    assert env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == EPHEMERAL_STARTUP_TIMEOUT_S
    assert int(EPHEMERAL_STARTUP_TIMEOUT_S) > 20  # Prefect's default failed ~1 resume in 30 under load
    mine = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300", "PREFECT_HOME": str(tmp_path / "p")}
    prefect_defaults(mine)
    assert mine["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "300"  # the operator's value wins


def test_prefect_home_is_created_with_its_parents_on_a_fresh_clone(tmp_path: Path) -> None:
    """No .stanch yet (a fresh clone): Prefect would fail to create <home>/prefect (it makes no
    parents), fail to open its database and time out after 90 s; the CLI creates it first."""
    env: dict[str, str] = {"STANCH_HOME": str(tmp_path / "fresh" / ".stanch")}
    prefect_defaults(env)
    assert env["PREFECT_HOME"] == str(tmp_path / "fresh" / ".stanch" / "prefect")
    assert Path(env["PREFECT_HOME"]).is_dir()
    theirs = {"STANCH_HOME": str(tmp_path / "other"), "PREFECT_HOME": str(tmp_path / "theirs")}
    prefect_defaults(theirs)  # an operator's PREFECT_HOME is theirs: neither moved nor created
    assert theirs["PREFECT_HOME"] == str(tmp_path / "theirs") and not (tmp_path / "theirs").exists()
