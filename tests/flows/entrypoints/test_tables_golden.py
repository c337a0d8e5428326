"""`stanch actions` and `stanch timeline show` at 80 columns (issue 13), held against golden files
in tests/flows/entrypoints/golden/ (regenerate with STANCH_UPDATE_GOLDEN=1 and review the diff):
plain when piped (no colour), failures in red on a colour terminal, decisive details in full, and
no id, action name or event kind ever split across lines (a line longer than 80 columns is one
word standing alone: a terminal wraps it, a pipe gets it whole). Goldens of REAL runs:
test_real_run_golden.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rich.console import Console

from flows.entrypoints.tables import actions_view, timeline_view
from integrations.base import default_registry

GOLDEN = Path(__file__).parent / "golden"


def _render(renderable: Any, *, colour: bool = False, soft_wrap: bool = True) -> str:
    console = Console(width=80, record=True, force_terminal=colour, color_system="standard" if colour else None,
                      file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(renderable, soft_wrap=soft_wrap)  # as the CLI prints them (views: never cropped)
    return console.export_text(styles=colour)


def fits_80(text: str) -> None:
    """Every line fits 80 columns, or is a single word (an id too long for any line) on its own."""
    for line in text.splitlines():
        assert len(line) <= 80 or len(line.split()) == 1, line


def _golden(name: str, text: str) -> None:
    fits_80(text)
    if os.environ.get("STANCH_UPDATE_GOLDEN"):
        (GOLDEN / name).write_text(text, encoding="utf-8")
    assert text == (GOLDEN / name).read_text(encoding="utf-8")


def test_actions_at_80_columns_piped() -> None:
    registry = default_registry()
    text = _render(actions_view(registry))
    assert "\x1b[" not in text
    lines = [ln.strip() for ln in text.splitlines()]
    for spec in registry.specs():
        assert spec.name in lines, spec.name  # the name on a line of its own, whole
        if spec.compensation:  # "undo: <action>" together, at the end of a line
            assert any(ln.endswith(f"undo: {spec.compensation}") for ln in lines), spec.name
    _golden("actions_80.txt", text)


def _e(seq: int, ts: str, kind: str, step: str | None = None, **data: Any) -> dict[str, Any]:
    return {"seq": seq, "ts": f"2026-03-31T{ts}.000000+00:00", "kind": kind, "step": step, "item": None,
            "actor": "stanch", "data": data}


EVENTS = [
    _e(1, "04:00:00", "run.started", incident_id="INC-GOLD-1", title="Leaked access key"),
    _e(2, "04:00:03", "step.succeeded", "disable", duration_s=2.0, output={
        "account": "111122223333", "user": "ci-deployer",
        "deactivated": ["AKIAEXAMPLEKEY000001", "AKIAEXAMPLEKEY000002"], "already_inactive": []}),
    _e(3, "04:00:04", "approval.requested", "approve-email", approvers=["U0LEAD1"], min_approvals=1,
       expires_at="2026-03-31T04:30:04+00:00", message="E-mail 42 customers?"),
    _e(4, "04:12:04", "approval.approved", "approve-email", approver="slack:U0LEAD1",
       comment="go ahead, legal signed off"),
    _e(5, "04:12:09", "step.succeeded", "email", output={"sent": 42, "recipients": ["c0@example.com",
                                                                                    "c1@example.com"]}),
    _e(6, "04:12:10", "step.failed", "rotate", error="AccessDenied: secretsmanager:RotateSecret on "
                                                     "arn:aws:secretsmanager:us-east-1:111122223333:secret:deploy"),
    _e(7, "04:12:11", "run.finished", outcome="failed"),
]


def test_timeline_show_at_80_columns_piped_and_in_colour() -> None:
    plain = _render(timeline_view(EVENTS, "timeline of INC-GOLD-1 (UTC)"))
    assert "\x1b[" not in plain
    for needle in ("AKIAEXAMPLEKEY000001", "AKIAEXAMPLEKEY000002", "recipients (2)", "by slack:U0LEAD1",
                   "legal signed off", "AccessDenied", "ci-deployer",
                   "arn:aws:secretsmanager:us-east-1:111122223333:secret:deploy"):
        assert any(needle in line for line in plain.splitlines()), needle  # on one line, whole
    _golden("timeline_show_80.txt", plain)
    coloured = _render(timeline_view(EVENTS), colour=True)
    assert "\x1b[1;31mstep.failed" in coloured and "\x1b[31mAccessDenied" in coloured


def test_scope_at_80_columns_piped() -> None:
    """Account ids are never split; the package, its path and the safe version stack in one cell."""
    from integrations.inventory import render_scope_table, scope

    fixtures = Path(__file__).resolve().parents[2] / "fixtures" / "inventory" / "fleet"
    result = scope("MAL-2026-2307", fixtures / "inventory.yaml")
    text = _render(render_scope_table(result), soft_wrap=False)
    assert "\x1b[" not in text
    for svc in result.affected:
        assert f" {svc.account} " in text, svc.account
    _golden("scope_80.txt", text)
