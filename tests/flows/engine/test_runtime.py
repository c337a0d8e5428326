"""The generic flow against real Prefect task runs (core actions only: no network)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from flows.engine.runtime import run_runbook
from flows.engine.secret_inputs import deposit, discard, ref
from flows.engine.timeline import verify

HERE = Path(__file__).parent / "runbooks"
pytestmark = pytest.mark.usefixtures("prefect_server")


def _run(tmp_path: Path, name: str, inputs: dict | None = None):  # type: ignore[no-untyped-def]
    state = run_runbook(str(HERE / name), inputs or {}, f"INC-TEST-{name.split('.')[0]}", str(tmp_path),
                        False, "test", return_state=True)
    return state, tmp_path / f"INC-TEST-{name.split('.')[0]}"


def _prefect_story(state: Any, *, want: str, timeout: float = 15.0) -> tuple[str, dict[str, Any]]:
    """The flow run's log lines (polled until ``want`` arrived: Prefect ships logs in the background)
    and its markdown artifacts by key, each with the name of the task run it is attached to."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterTaskRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)  # ship the batched logs now, not at the next interval
    run_id = state.state_details.flow_run_id
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            logs = "\n".join(lg.message for lg in client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))))
            if want in logs or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        tasks = {t.id: t.name for t in client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))}
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(
            task_run_id=ArtifactFilterTaskRunId(any_=list(tasks))))
    return logs, {a.key: (tasks.get(a.task_run_id), a.data) for a in arts}  # type: ignore[arg-type]


def _kinds(folder: Path) -> list[tuple[str, str | None, str | None]]:
    import json

    return [(e["kind"], e["step"], e["item"]) for e in map(json.loads, (folder / "timeline.jsonl").open())]


def test_branches_fan_out_retries_and_tolerated_failure(tmp_path: Path) -> None:
    state, folder = _run(tmp_path, "branches.yaml")
    assert state.is_completed(), state.message
    events = _kinds(folder)
    # fan-out items are named after their item
    assert {i for k, s, i in events if k == "item.succeeded" and s == "right"} == {"alpha", "beta", "gamma"}
    # the flaky step was retried twice on transient errors, then succeeded
    assert [k for k, s, _ in events if s == "flaky" and k == "item.retrying"] == ["item.retrying"] * 2
    assert ("step.succeeded", "flaky", None) in events
    # the optional failure did not stop `end`; the false `if` skipped `never`
    assert ("step.failed", "optional", None) in events
    assert ("step.skipped", "never", None) in events
    assert ("step.succeeded", "end", None) in events
    # a report per step, and a verified chain
    assert sorted(p.stem for p in (folder / "reports").glob("*.md")) == sorted(
        ["start", "left", "right", "flaky", "optional", "never", "end"])
    assert verify(folder / "timeline.jsonl").ok
    assert "alpha,beta,gamma" in (folder / "reports" / "end.md").read_text()
    # the Prefect UI tells the story: a log line per step start / result / failure cause, and each
    # step's report attached to its own task run under a stable key
    logs, artifacts = _prefect_story(state, want="run finished: succeeded")
    assert "step start started: start (action core.note)" in logs
    assert "step optional failed: optional thing broke" in logs
    assert "step never skipped: condition is false" in logs
    assert "step right succeeded in" in logs and "run finished: succeeded" in logs
    assert artifacts["inc-test-branches-end"][0] == "end"
    assert artifacts["inc-test-branches-optional"][0] == "optional"
    assert artifacts["inc-test-branches-right"][0].startswith("right[")
    assert "optional thing broke" in str(artifacts["inc-test-branches-optional"][1])
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        tags = client.read_flow_run(state.state_details.flow_run_id).tags
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    assert {"runbook:branches", "live"} <= set(tags) and any(t.startswith("severity:") for t in tags)
    # the skipped step is in the graph: a task run in a terminal Skipped state, carrying its report
    skipped = [t for t in task_runs if t.state is not None and t.state.name == "Skipped"]
    assert len(skipped) == 1 and skipped[0].state.type.value == "CANCELLED", [(t.name, t.state) for t in task_runs]
    assert artifacts["inc-test-branches-never"][0] == skipped[0].name
    assert "condition is false" in (skipped[0].state.message or "")


def test_failed_required_step_fails_run_compensates_and_reports_why(tmp_path: Path) -> None:
    state, folder = _run(tmp_path, "failing.yaml")
    assert state.is_failed()
    events = _kinds(folder)
    # permanent errors are not retried
    assert not [e for e in events if e[0] == "item.retrying"]
    assert ("step.skipped", "third", None) in events
    assert ("compensation.succeeded", "first", None) in events
    report = (folder / "reports" / "second.md").read_text()
    assert "FAILED" in report and "AccessDenied: iam:UpdateAccessKey not allowed" in report
    pm = (folder / "postmortem.md").read_text()
    assert "Containment FAILED" in pm and "undo first (first)" in pm
    assert verify(folder / "timeline.jsonl").ok


def test_secret_inputs_never_reach_timeline_reports_or_postmortem(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    secret = "hunter2-very-secret-token"
    deposit("INC-TEST-secret", {"token": secret})  # the value stays in this process: the flow gets a reference
    try:
        with caplog.at_level("INFO"):
            state, folder = _run(tmp_path, "secret.yaml", {"token": ref("token")})
    finally:
        discard("INC-TEST-secret")
    assert state.is_failed()
    assert "webhook rejected token" in caplog.text and secret not in caplog.text  # Prefect's own logs
    written = {p.name: p.read_text() for p in folder.rglob("*") if p.is_file()}
    assert "postmortem.md" in written and "timeline.jsonl" in written
    for name, text in written.items():
        assert secret not in text, name
    assert "webhook rejected token [redacted]" in written["fail.md"]
    logs, artifacts = _prefect_story(state, want="run finished: failed")
    assert "step fail failed:" in logs and "webhook rejected token [redacted]" in logs
    assert secret not in logs and secret not in json.dumps([a[1] for a in artifacts.values()])
    meta = json.loads(written["incident.json"])
    assert meta["inputs"] == {"token": {"$secret_ref": "token"}}  # only the marker is kept


def test_a_secret_passed_to_the_flow_as_a_value_is_refused(tmp_path: Path) -> None:
    state, folder = _run(tmp_path, "secret.yaml", {"token": "plain-value-in-prefect"})
    assert state.is_failed()
    assert "passed to the flow as values" in str(state.result(raise_on_failure=False))
    assert not (folder / "timeline.jsonl").exists()  # refused before anything ran


def test_batched_fan_out_keeps_per_item_retries_events_and_failures(tmp_path: Path) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, FlowRunFilterTags

    state, folder = _run(tmp_path, "batched.yaml")
    assert state.is_failed()  # item e fails permanently after its transient failure
    events = _kinds(folder)
    assert {i for k, _, i in events if k == "item.succeeded"} == {"a", "b", "c", "d"}
    assert {i for k, _, i in events if k == "item.failed"} == {"e"}
    assert sorted(i for k, _, i in events if k == "item.retrying") == ["a", "b", "c", "d", "e"]
    with get_client(sync_client=True) as client:
        run = client.read_flow_runs(flow_run_filter=FlowRunFilter(  # by its incident tag, not its name
            tags=FlowRunFilterTags(all_=["incident:INC-TEST-batched"])))[0]
        names = sorted(t.name for t in client.read_task_runs() if t.flow_run_id == run.id)
    assert names == ["flaky-batch[a +1]", "flaky-batch[c +1]", "flaky-batch[e]"]
    # Prefect tags for the UI's filters, read back through the API with a tag filter; a readable name
    runbook = run.tags[0].split(":", 1)[1]
    assert run.name == f"{runbook} · INC-TEST-batched"
    with get_client(sync_client=True) as client:
        tagged = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=["live", f"runbook:{runbook}"]),
            name=FlowRunFilterName(any_=[run.name])))
    assert [r.id for r in tagged] == [run.id]
    assert "live" in run.tags and any(t.startswith("severity:sev") for t in run.tags)
