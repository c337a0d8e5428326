"""Drill history and report over three scorecards: the chart's plotted data equals the
scorecards' figures (read back from the PNG's metadata, not pixels), its layout is readable (no
legend over a point, a day-wide axis for one drill, a log time axis when a sandbox drill meets a
5-minute target); the Prefect artifact holds the same table and chart; CLI output and exit codes."""

from __future__ import annotations

import base64
import io
import json
import warnings
from datetime import datetime, timedelta
from pathlib import Path

from PIL import Image
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from typer.testing import CliRunner

from flows.drills.history import history, iter_scorecards, trend

CARDS = [
    ("INC-A", "clean-run", "2026-11-02T10:00:00+00:00", 72, False, 540.0, ["after"]),
    ("INC-B", "clean-run", "2026-11-09T10:00:00+00:00", 88, True, 420.5, []),
    ("INC-C", "clean-run", "2026-11-16T10:00:00+00:00", 95, True, 301.0, []),
]


def write_cards(store: Path) -> None:
    for inc, scenario, started, score, passed, ttc, failed in CARDS:
        probes = [{"phase": "after", "name": "certificate reissued", "probe": "acm.certificate_reissued",
                   "passed": not failed, "observed": "old serial", "expected": "new serial", "detail": ""}]
        card = {"scenario": scenario, "runbook": "compromised-dependency", "incident_id": inc, "drill": True,
                "started_at": started, "finished_at": started, "outcome": "succeeded", "score": score,
                "passed": passed, "time_to_contain_s": ttc, "target_time_to_contain_s": 600,
                "time_to_first_decision_s": None, "target_time_to_first_decision_s": None, "probes": probes,
                "approvers": [], "injects": [], "retries": 0, "weights": {}}
        (store / inc).mkdir(parents=True)
        (store / inc / "scorecard.json").write_text(json.dumps(card))
    (store / "INC-LIVE").mkdir()  # a live incident: no scorecard, skipped
    (store / "INC-OTHER").mkdir()
    (store / "INC-OTHER" / "scorecard.json").write_text(json.dumps(
        {"scenario": "other", "incident_id": "INC-OTHER", "started_at": "2026-11-20T10:00:00+00:00", "score": 10}))


def test_history_and_report_match_the_scorecards(prefect_server: None, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                 monkeypatch) -> None:
    store = tmp_path / "incidents"
    write_cards(store)
    assert [c["incident_id"] for c in iter_scorecards(store, "clean-run")] == ["INC-A", "INC-B", "INC-C"]
    assert len(list(iter_scorecards(store))) == 4
    rows = history(store, "clean-run")
    assert rows[0].failed_probes == ["after:certificate reissued"]
    assert trend([r.score for r in rows]).endswith("↑")

    from flows.entrypoints.cli import app

    monkeypatch.setenv("STANCH_STORE", str(store))
    runner = CliRunner()
    out = runner.invoke(app, ["drill", "history", "clean-run"], env={"COLUMNS": "160"})
    assert out.exit_code == 0, out.output
    assert "72" in out.output and "95" in out.output and "↑" in out.output
    assert "INC-OTHER" not in out.output and "certificate" in out.output  # (folded when narrow)
    # the verdict in words, not only in colour (lost when piped)
    verdicts = [line.split()[4] for line in out.output.splitlines() if line.startswith("2026-")]
    assert verdicts == ["FAILED", "passed", "passed"], out.output

    with warnings.catch_warnings():  # no deprecated artifact path (prefect.artifacts outside a run)
        warnings.simplefilter("error", FutureWarning)
        res = runner.invoke(app, ["drill", "report", "clean-run", "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, (res.output, res.exception)
    png = Image.open(tmp_path / "rep" / "trend.png")
    data = json.loads(png.info["stanch-data"])  # what was plotted
    assert data["scores"] == [c[3] for c in CARDS]
    assert data["time_to_contain_s"] == [c[5] for c in CARDS]
    assert data["dates"] == [c[2] for c in CARDS]
    assert data["scenarios"] == ["clean-run"] * 3 and data["passed"] == [c[4] for c in CARDS]
    assert data["targets"] == [{"target_s": 600, "scenarios": ["clean-run"], "label": "target 10m00s (clean-run)"}]
    assert data["not_contained"] == []
    assert data["layout"]["legend_covers_a_point"] is False and data["layout"]["time_scale"] == "linear"
    assert all(0.05 < h < 0.95 for h in data["layout"]["time_points_height"]), data["layout"]
    table = (tmp_path / "rep" / "history.md").read_text()
    assert table.count("| clean-run |") == 3 and "5m01s" in table
    # the report is also a Prefect artifact: the same table, the same chart inline (read from the API)
    assert "Prefect artifact: drill-trend-clean-run" in res.output, res.output
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
            any_=["drill-trend-clean-run"])), limit=1)
    body = str(artifact.data)
    assert artifact.type == "markdown" and table.split("\n\n", 2)[2] in body
    inline = Image.open(io.BytesIO(base64.b64decode(body.split("data:image/png;base64,", 1)[1].split(")", 1)[0])))
    assert json.loads(inline.info["stanch-data"]) == data

    # one sandbox drill (1.4 s) against a 5-minute target: a day-wide axis, not years; the time on a
    # log scale so the point is not flattened onto the axis
    (store / "INC-SOLO").mkdir()
    (store / "INC-SOLO" / "scorecard.json").write_text(json.dumps(
        {"scenario": "solo", "incident_id": "INC-SOLO", "started_at": "2026-12-06T08:00:25+00:00", "score": 100,
         "passed": True, "time_to_contain_s": 1.4, "target_time_to_contain_s": 300, "probes": []}))
    assert runner.invoke(app, ["drill", "report", "solo", "--out", str(tmp_path / "solo")]).exit_code == 0
    layout = json.loads(Image.open(tmp_path / "solo" / "trend.png").info["stanch-data"])["layout"]
    span = datetime.fromisoformat(layout["x_to"]) - datetime.fromisoformat(layout["x_from"])
    assert timedelta(hours=6) <= span <= timedelta(days=2), layout
    assert layout["time_scale"] == "log" and layout["time_points_height"][0] > 0.1, layout

    missing = runner.invoke(app, ["drill", "report", "nope", "--out", str(tmp_path / "x")])
    assert missing.exit_code == 1 and not (tmp_path / "x").exists()


def test_sub_second_durations_are_not_0s() -> None:
    from flows.drills.history import fmt_seconds

    assert [fmt_seconds(v) for v in (0.5, 0.0004, 1.4, 59.6, 300.0, None)] == [
        "500ms", "1ms", "1s", "1m00s", "5m00s", "—"]


def test_history_and_report_read_the_store_given(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Drills run with `drill run --store DIR` are read back with `--store DIR` (that folder,
    whatever STANCH_STORE says), by history and by report."""
    from flows.entrypoints.cli import app

    store = tmp_path / "elsewhere"
    write_cards(store)
    monkeypatch.setenv("STANCH_STORE", str(tmp_path / "default"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    runner = CliRunner()
    assert "no drills recorded" in runner.invoke(app, ["drill", "history"]).output
    out = runner.invoke(app, ["drill", "history", "clean-run", "--store", str(store)], env={"COLUMNS": "160"})
    assert out.exit_code == 0 and out.output.count("clean-run") == 3, out.output
    res = runner.invoke(app, ["drill", "report", "clean-run", "--store", str(store), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "history.md").read_text().count("| clean-run |") == 3


def test_report_over_several_scenarios(tmp_path: Path) -> None:
    """Scenarios with different targets, minutes apart, one drill that never contained: one
    series per scenario (points of two scenarios never joined), a labelled target line per
    distinct target, the non-contained drill marked (not dropped), date tick labels (not `30`)."""
    from flows.drills.history import render_chart

    store = tmp_path / "s"
    cards = [("INC-1", "clean", "2026-12-06T08:00:00+00:00", 100, True, 9.5, 300),
             ("INC-2", "acm-access-denied", "2026-12-06T08:01:30+00:00", 59, False, None, 300),
             ("INC-3", "approver-silent", "2026-12-06T08:03:00+00:00", 64, False, 5.2, 0.5),
             ("INC-4", "clean", "2026-12-06T08:04:30+00:00", 100, True, 8.0, 300)]
    for inc, scenario, started, score, passed, ttc, target in cards:
        (store / inc).mkdir(parents=True)
        (store / inc / "scorecard.json").write_text(json.dumps(
            {"scenario": scenario, "incident_id": inc, "started_at": started, "score": score, "passed": passed,
             "time_to_contain_s": ttc, "target_time_to_contain_s": target, "probes": []}))
    rows = history(store)
    data = render_chart(rows, tmp_path / "trend.png")
    assert json.loads(Image.open(tmp_path / "trend.png").info["stanch-data"]) == data
    assert data["scores"] == [c[3] for c in cards] and data["time_to_contain_s"] == [c[5] for c in cards]
    assert data["scenarios"] == [c[1] for c in cards]
    assert data["series"] == {"clean": [0, 3], "acm-access-denied": [1], "approver-silent": [2]}
    assert [(t["target_s"], t["scenarios"], t["label"]) for t in data["targets"]] == [
        (0.5, ["approver-silent"], "target 500ms (approver-silent)"),
        (300, ["clean", "acm-access-denied"], "target 5m00s (clean, acm-access-denied)")]
    assert data["not_contained"] == ["2026-12-06T08:01:30+00:00"]
    layout = data["layout"]
    assert layout["legend_covers_a_point"] is False and layout["time_scale"] == "log"
    assert len(layout["time_points_height"]) == 3 and all(0.0 < h < 1.0 for h in layout["time_points_height"])
    assert layout["x_tick_labels"] and all(t.startswith("2026-12-06") for t in layout["x_tick_labels"]), layout
