"""``run_with_progress`` (stanch run|resume|rollback): the live view knows the incident it shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows.engine.events import publish
from flows.entrypoints.terminal import run_with_progress


class _Done:
    def is_completed(self) -> bool:
        return True

    def is_failed(self) -> bool:
        return False

    def result(self, raise_on_failure: bool = False) -> dict[str, Any]:
        return {"incident_id": "INC-RESUMED", "outcome": "succeeded"}


def test_a_resumed_run_waiting_for_approval_names_its_incident(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A resumed run records run.resumed, never run.started: the approve command it shows must
    still carry the incident id (it printed ``stanch approve <incident> approve-go``)."""

    def resumed_flow(**params: Any) -> _Done:
        for kind, step in (("run.resumed", None), ("step.started", "approve-go"), ("approval.requested", "approve-go")):
            publish({"kind": kind, "step": step, "item": None, "ts": "2026-12-06T10:00:00.000Z",
                     "data": {"approvers": ["U0LEAD1"], "expires_at": "2026-12-06T10:30:00+00:00"}})
        return _Done()

    summary = run_with_progress(resumed_flow, "resuming INC-RESUMED", tmp_path, incident_id="INC-RESUMED")
    assert summary["outcome"] == "succeeded"
    out = capsys.readouterr().out
    assert "stanch approve INC-RESUMED approve-go" in out and "<incident>" not in out
