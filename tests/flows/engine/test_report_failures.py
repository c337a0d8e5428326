"""A failing report or post-mortem template never takes a run down (real Prefect runs).

Every hostile payload of tests/hostile/expressions/ that parses (it fails while rendering: pow bombs,
loop nesting, huge widths, ...) and every template error of tests/hostile/reports/ (ZeroDivisionError,
OverflowError, RecursionError, a sandbox refusal, an undefined name) is used as a step's report
template, and one of them as the post-mortem template. The run's steps all succeed, each report says
which template failed and why, and the post-mortem says the same on top of the default post-mortem.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from jinja2 import TemplateSyntaxError

from flows.engine.expressions import environment
from flows.engine.reports import (
    DEFAULT_STEP_REPORT,
    ReportError,
    fallback_report,
    render_postmortem_safely,
    render_template,
)
from flows.engine.runtime import run_runbook
from flows.engine.timeline import verify

HOSTILE = Path(__file__).parents[2] / "hostile"


def _expected(path: Path) -> str:
    m = re.match(r"\{# expect: (.*?) #\}", path.read_text(encoding="utf-8"))
    assert m
    return m.group(1)


def _render_time_payloads() -> list[Path]:
    out = []
    for p in sorted((HOSTILE / "expressions").glob("*.j2")) + sorted((HOSTILE / "reports").glob("*.j2")):
        try:
            environment().parse(p.read_text(encoding="utf-8"))
        except TemplateSyntaxError:
            continue  # refused before rendering (nesting, literals): `validate` reports those (RB108)
        out.append(p)
    return out


@pytest.mark.parametrize("payload", sorted((HOSTILE / "reports").glob("*.j2")),
                         ids=lambda p: p.stem)
def test_template_errors_become_report_errors_naming_the_template(payload: Path) -> None:
    with pytest.raises(ReportError) as err:
        render_template(payload, {"step": {"title": "T"}})
    assert str(err.value).startswith(f"{payload}:1: report template error: ")
    assert _expected(payload) in str(err.value)


def test_fallback_report_says_which_template_failed_then_renders_the_default() -> None:
    context = {"incident": {"id": "INC-1", "drill": False, "runbook": "r", "title": "t", "severity": "sev2",
                            "started_at": "2026-01-01T00:00:00Z"},
               "inputs": {}, "step": {"id": "s", "title": "Step S", "action": "core.note", "status": "succeeded",
                                      "started_at": None, "finished_at": "2026-01-01T00:00:01Z",
                                      "duration_s": 1.0, "attempts": 1, "error": None, "reason": None,
                                      "output": {"message": "hi"}, "items": [], "compensation": None}}
    bad = HOSTILE / "reports" / "zero-division.j2"
    with pytest.raises(ReportError) as err:
        render_template(bad, context)
    text = fallback_report("Step S", "succeeded", err.value, context)
    assert text.startswith("# Step S — SUCCEEDED\n\n> **The report template failed**: ")
    assert "zero-division.j2:1" in text and "ZeroDivisionError: division by zero" in text
    assert render_template(DEFAULT_STEP_REPORT, context) in text  # the default report follows


def test_postmortem_falls_back_when_its_template_fails() -> None:
    text, problem = render_postmortem_safely([], {"steps": [], "runbook": "r", "incident_id": "INC-1"},
                                             HOSTILE / "expressions" / "range-nesting.j2")
    assert problem is not None and "exceeds the limit of 1,000,000 loop iterations" in problem
    assert text.startswith("> **The post-mortem template failed**: ")
    assert "range-nesting.j2" in text


@pytest.mark.usefixtures("prefect_server")
def test_hostile_report_templates_in_a_real_run_fail_softly(tmp_path: Path) -> None:
    payloads = _render_time_payloads()
    assert len(payloads) >= 20
    folder = tmp_path / "runbook"
    folder.mkdir()
    steps = []
    for i, p in enumerate(payloads):
        shutil.copy(p, folder / p.name)
        steps.append({"id": f"s{i:02d}", "title": p.stem, "action": "core.note", "with": {"message": p.stem},
                      "report": p.name, **({"needs": [f"s{i - 1:02d}"]} if i % 4 else {})})
    (folder / "pm-zero-division.j2").write_text("# {{ incident.id }}: {{ 1 / 0 }}\n", encoding="utf-8")
    runbook = {"name": "hostile-reports", "title": "Hostile report templates", "postmortem": "pm-zero-division.j2",
               "steps": steps}
    (folder / "hostile-reports.yaml").write_text(yaml.safe_dump(runbook, sort_keys=False), encoding="utf-8")

    state = run_runbook(str(folder / "hostile-reports.yaml"), {}, "INC-TEST-hostile-reports", str(tmp_path),
                        False, "test", return_state=True)

    assert state.is_completed(), state.message
    inc = tmp_path / "INC-TEST-hostile-reports"
    events = [json.loads(line) for line in (inc / "timeline.jsonl").open()]
    assert {e["step"] for e in events if e["kind"] == "step.succeeded"} == {s["id"] for s in steps}
    failed_reports = {e["step"]: e["data"]["error"] for e in events if e["kind"] == "report.failed"}
    for step, p in zip(steps, payloads, strict=True):
        report = (inc / "reports" / f"{step['id']}.md").read_text(encoding="utf-8")
        assert report.startswith(f"# {p.stem} — SUCCEEDED\n\n> **The report template failed**: "), report[:300]
        assert p.name in report and _expected(p) in report, report[:600]
        assert "| Incident | `INC-TEST-hostile-reports`" in report  # the default report follows the note
        assert _expected(p) in failed_reports[step["id"]]
    outcome = [e for e in events if e["kind"] == "run.finished"][-1]["data"]["outcome"]
    assert outcome == "succeeded"
    pm = (inc / "postmortem.md").read_text(encoding="utf-8")
    assert pm.startswith("> **The post-mortem template failed**: ")
    assert "pm-zero-division.j2:1: report template error: ZeroDivisionError: division by zero" in pm
    assert "Hostile report templates" in pm  # the default post-mortem follows
    assert verify(inc / "timeline.jsonl").ok
