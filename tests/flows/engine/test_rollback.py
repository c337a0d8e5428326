"""`stanch rollback`: compensations of succeeded steps, newest first, each exactly once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.engine.runtime import rollback_incident, run_runbook

HERE = Path(__file__).parent / "runbooks"
pytestmark = pytest.mark.usefixtures("prefect_server")


def _undone(folder: Path) -> list[str]:
    return [e["data"]["output"]["message"] for e in map(json.loads, (folder / "timeline.jsonl").open())
            if e["kind"] == "compensation.succeeded"]


def test_rollback_runs_each_compensation_once_in_reverse(tmp_path: Path) -> None:
    state = run_runbook(str(HERE / "undoable.yaml"), {}, "INC-RB", str(tmp_path), False, "t", return_state=True)
    assert state.is_completed()
    assert _undone(tmp_path / "INC-RB") == []  # a successful run undoes nothing by itself

    first = rollback_incident("INC-RB", str(tmp_path), return_state=True)
    assert first.is_completed(), first.message
    # newest first: the fan-out step before the step it needs, and its items in reverse order too
    assert _undone(tmp_path / "INC-RB") == ["undo two b", "undo two a", "undo one"]

    again = rollback_incident("INC-RB", str(tmp_path), return_state=True)
    assert again.is_completed()
    assert len(_undone(tmp_path / "INC-RB")) == 3  # nothing undone twice
    assert "## Compensations (rollback)" in (tmp_path / "INC-RB" / "postmortem.md").read_text()
    # the Prefect UI lists the incident's three runs by readable names (found by the incident tag)
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["incident:INC-RB"])))
    assert sorted((r.name, "rollback" in r.tags) for r in runs) == [
        ("rollback · undoable · INC-RB", True), ("rollback · undoable · INC-RB", True), ("undoable · INC-RB", False)]


def test_a_compensation_that_cannot_be_built_fails_alone_not_the_run(tmp_path: Path) -> None:
    """The step's side effect happened: the run carries on, and rollback says this undo is unknown."""
    state = run_runbook(str(HERE / "undo-breaks.yaml"), {}, "INC-UB", str(tmp_path), False, "t", return_state=True)
    assert state.is_completed(), state.message
    events = [json.loads(line) for line in (tmp_path / "INC-UB" / "timeline.jsonl").open()]
    assert [e["step"] for e in events if e["kind"] == "step.succeeded"] == ["one", "two"]

    undo = rollback_incident("INC-UB", str(tmp_path), return_state=True)
    assert undo.is_failed()
    failed = [e for e in map(json.loads, (tmp_path / "INC-UB" / "timeline.jsonl").open())
              if e["kind"] == "compensation.failed"]
    assert len(failed) == 1 and "cannot build the compensation's parameters" in failed[0]["data"]["error"]


def test_rollback_edits_the_slack_header_to_say_rolled_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from integrations.sandbox.slack_standin import SlackStandIn

    with SlackStandIn() as slack:
        monkeypatch.setenv("STANCH_SLACK_BASE_URL", slack.api_url)
        monkeypatch.setenv("STANCH_SLACK_TOKEN", slack.token)
        monkeypatch.setenv("STANCH_SLACK_CHANNEL", "#incident")
        assert run_runbook(str(HERE / "undoable.yaml"), {}, "INC-RBS", str(tmp_path), False, "t",
                           return_state=True).is_completed()
        header = [e["data"] for e in map(json.loads, (tmp_path / "INC-RBS" / "timeline.jsonl").open())
                  if e["kind"] == "slack.header"][-1]

        def header_text() -> str:  # read back from the stand-in: the thread's first message, as edited
            return next(m["text"] for m in slack.messages(header["channel"]) if m.get("ts") == header["ts"])

        assert "rolled back" not in header_text()
        assert rollback_incident("INC-RBS", str(tmp_path), return_state=True).is_completed()
        assert "rolled back" in header_text() and "INC-RBS" in header_text()
