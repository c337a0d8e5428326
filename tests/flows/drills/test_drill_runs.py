"""Drills end to end: each drill gets its own sandbox process (real moto over HTTP, the Slack
stand-in), the runbook runs as a real ``stanch run --drill`` child against the session Prefect
server, and the scorecard is checked against what moto and the stand-in recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.drills.runner import run_drill

HERE = Path(__file__).parent / "scenarios"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("drills")


def test_clean_drill_passes(prefect_server: None, store: Path) -> None:
    result = run_drill(HERE / "clean.yaml", store=store, incident_id="INC-DRILL-CLEAN")
    card = json.loads((result.folder / "scorecard.json").read_text())
    assert result.exit_code == 0, (result.folder / "scorecard.md").read_text()
    assert card["passed"] and card["score"] == 100 and card["outcome"] == "succeeded"
    assert {p["name"] for p in card["probes"] if p["phase"] == "after"} >= {"iam.ci_keys_inactive",
                                                                             "acm.certificate_reissued"}
    assert (result.folder / "scorecard.md").exists()
    assert not (result.folder / "scorecard.slack-error.txt").exists()
