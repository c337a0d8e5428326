"""The live progress table at 80 columns (issue 13): a waiting approval shows who, since when,
until when and the exact `stanch approve` command; a failure shows its cause on one line (no
traceback); notes are cut at a word. Golden file: tests/flows/entrypoints/golden/progress_80.txt
(regenerate with STANCH_UPDATE_GOLDEN=1)."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

from flows.entrypoints.progress import Progress, one_line

GOLDEN = Path(__file__).parent / "golden" / "progress_80.txt"
TS = "2026-01-01T03:00:00.000000+00:00"


def test_progress_table_at_80_columns() -> None:
    console = Console(width=80, record=True, force_terminal=False, color_system=None)
    p = Progress(Console(file=open(os.devnull, "w"), width=80),  # noqa: SIM115 (piped lines not shown here)
                 clock=lambda: 100.0)
    p.on_event({"kind": "run.started", "ts": TS, "data": {"incident_id": "INC-20260101-030000-AB12"}})
    p.on_event({"kind": "step.started", "step": "scope", "ts": TS, "data": {}})
    p.on_event({"kind": "step.succeeded", "step": "scope", "ts": TS, "data": {}})
    p.on_event({"kind": "step.started", "step": "revoke-ci-keys", "ts": TS, "data": {}})
    p.on_event({"kind": "step.failed", "step": "revoke-ci-keys", "ts": TS, "data": {
        "error": "Traceback (most recent call last):\n  File \"x.py\", line 1\nPermanentActionError: AccessDenied "
                 "for iam:UpdateAccessKey on user ci-desktop-app in account 222222222222 — check the role"}})
    p.on_event({"kind": "approval.requested", "step": "approve-rotation", "ts": TS, "data": {
        "approvers": ["@security-leads"], "expires_at": "2026-01-01T04:00:00+00:00"}})
    p.rows["scope"]["elapsed"] = 1.0
    p.rows["revoke-ci-keys"]["elapsed"] = 2.5
    console.print(p._table())
    out = console.export_text()
    assert all(len(line) <= 80 for line in out.splitlines())
    assert "Traceback" not in out
    if os.environ.get("STANCH_UPDATE_GOLDEN"):
        GOLDEN.write_text(out, encoding="utf-8")
    assert out == GOLDEN.read_text(encoding="utf-8")


def test_one_line_cuts_at_a_word() -> None:
    assert one_line("alpha beta gamma delta", 14) == "alpha beta…"
    assert one_line("alpha beta gamma delta") == "alpha beta gamma delta"  # whole unless a width is given
    assert one_line("Traceback (most recent call last):\n  File x\nValueError: bad", 40) == "ValueError: bad"
