"""What a rollback says it undid, and the final error of a step whose retries ran out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.engine.runtime import rollback_incident, run_runbook

HERE = Path(__file__).parent / "runbooks"
pytestmark = pytest.mark.usefixtures("prefect_server")


def _events(folder: Path, kind: str) -> list[dict]:
    return [e for e in map(json.loads, (folder / "timeline.jsonl").open()) if e["kind"] == kind]


def test_exhausted_retries_say_gave_up_and_a_read_only_rollback_says_nothing_to_undo(tmp_path: Path) -> None:
    state = run_runbook(str(HERE / "exhausted.yaml"), {}, "INC-EX", str(tmp_path), False, "t", return_state=True)
    assert state.is_failed()
    folder = tmp_path / "INC-EX"
    assert len(_events(folder, "item.retrying")) == 1  # retries: 1 -> two attempts
    (failed,) = [e for e in _events(folder, "step.failed") if e["step"] == "flaky"]
    assert "gave up after 2 attempts" in failed["data"]["error"]
    assert "will be retried" not in (folder / "reports" / "flaky.md").read_text()

    back = rollback_incident("INC-EX", str(tmp_path), return_state=True)
    summary = back.result(raise_on_failure=False)
    assert back.is_completed() and summary["outcome"] == "nothing to undo"
    assert summary["undone"] == [] and summary["not_undone"] == []


def test_rollback_lists_the_steps_it_undid(tmp_path: Path) -> None:
    run_runbook(str(HERE / "undoable.yaml"), {}, "INC-UN", str(tmp_path), False, "t", return_state=True)
    back = rollback_incident("INC-UN", str(tmp_path), return_state=True)
    summary = back.result()
    assert summary["outcome"] == "rolled back" and summary["undone"] == ["two", "one"]
    (finished,) = _events(tmp_path / "INC-UN", "rollback.finished")
    assert finished["data"]["undone"] == ["two", "one"] and finished["data"]["not_undone"] == []
