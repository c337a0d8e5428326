"""The terminal as on-call meets it, from REAL runs (issue 13).

Recorded records (tests/fixtures/incidents/, made by record.py from a `make demo` run, a run whose
approval was refused, approved once and then denied from the CLI, and a failing run) rendered at
80 columns and piped — `stanch timeline show`, `stanch incidents`, the piped progress lines and the
live table — against goldens in golden/real/ (regenerate with STANCH_UPDATE_GOLDEN=1, review the
diff). Made-up events missed what these show: long event kinds and step[item] names, ARNs,
fingerprints, two threads' events a millisecond apart, compensation rows, a denied approval.

And one real failing run through the CLI's own code path (``execute_run``) with Prefect's console
handler on the terminal, as in `stanch run`: no traceback reaches stdout or stderr, Prefect's lines
go to <incident>/prefect.log, said once at the end.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from flows.engine.incident_list import list_incidents
from flows.engine.reports import event_detail
from flows.engine.timeline import read_events
from flows.entrypoints.progress import Progress, approval_wait
from flows.entrypoints.tables import DETAIL_LIMIT, incidents_view, timeline_view

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "incidents"
GOLDEN = Path(__file__).parent / "golden" / "real"
DEMO, DENY, FAIL = "INC-20261206-082349-DEMO", "INC-20261206-080018-DENY", "INC-20261206-082318-FAIL"


def _events(incident: str) -> list[dict[str, Any]]:
    return list(read_events(FIXTURES / incident / "timeline.jsonl"))


def _console(width: int = 80, *, colour: bool = False) -> Console:
    return Console(width=width, record=True, force_terminal=colour, color_system="standard" if colour else None,
                   file=io.StringIO())


def _printed(renderable: Any, width: int = 80, *, colour: bool = False) -> str:
    console = _console(width, colour=colour)
    console.print(renderable, soft_wrap=True)  # as the CLI prints the views
    return console.export_text(styles=colour)


def _screen(console: Console) -> list[str]:
    """The lines a terminal shows of what ``console`` wrote (escape codes dropped, a line redrawn
    after a carriage return counted as redrawn), every frame of a Live display in turn."""
    raw = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", console.file.getvalue())  # type: ignore[attr-defined]
    return [line.rsplit("\r", 1)[-1] for line in raw.split("\n")]


def _golden(name: str, text: str) -> None:
    if os.environ.get("STANCH_UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        (GOLDEN / name).write_text(text, encoding="utf-8")
    assert text == (GOLDEN / name).read_text(encoding="utf-8")


def _fits_80(text: str) -> None:
    for line in text.splitlines():
        assert len(line) <= 80 or len(line.split()) == 1, line  # longer only for one id alone on its line


def _ids(value: Any) -> set[str]:
    """The id-like strings in an event's data: AWS key ids, ARNs, fingerprints, e-mail addresses."""
    found: set[str] = set()
    if isinstance(value, dict):
        for v in value.values():
            found |= _ids(v)
    elif isinstance(value, list):
        for v in value:
            found |= _ids(v)
    elif isinstance(value, str):
        found |= set(re.findall(r"AKIA[0-9A-Z]{16}|arn:aws:[^\s;,)]+|\b[0-9a-f]{64}\b|[\w.]+@[\w.-]+\.example", value))
    return found


# ------------------------------------------------------------------------- stanch timeline show
def test_timeline_show_of_a_real_demo_run_never_splits_an_id() -> None:
    events = _events(DEMO)
    text = _printed(timeline_view(events, f"timeline of {DEMO} (UTC)"))
    lines = text.splitlines()
    _fits_80(text)
    for e in events:
        if e["kind"] in ("item.started", "report.written"):
            continue
        where = (e["step"] or "") + (f"[{e['item']}]" if e["item"] else "")
        head = f"{e['kind']} · {where}" if where else e["kind"]
        assert any(line.split("  ")[-1] == head for line in lines), head  # kind and step[item] on one line, whole
    details = [event_detail(e, limit=10**6) for e in events if e["kind"] not in ("item.started", "report.written")]
    ids = set().union(*(_ids(d) for d in details if len(d) <= DETAIL_LIMIT))
    assert len(ids) >= 10  # keys, certificate/secret ARNs, fingerprints, recipients
    for ident in ids:
        assert any(ident in line for line in lines), ident  # shown (in the events that hold it) …
        assert all(ident in line for line in lines if ident[:-3] in line), ident  # … and never split
    seqs = [int(m.group(1)) for m in re.finditer(r"^\s*(\d+)  \d\d:\d\d:\d\d  ", text, re.M)]
    assert seqs == sorted(seqs)
    _golden("timeline_demo_80.txt", text)


def test_timeline_show_of_real_failing_and_denied_runs() -> None:
    failing = _printed(timeline_view(_events(FAIL), f"timeline of {FAIL} (UTC)"))
    denied = _printed(timeline_view(_events(DENY), f"timeline of {DENY} (UTC)"))
    for text in (failing, denied):
        _fits_80(text)
    arn = "arn:aws:sts::222222222222:assumed-role/StanchIncidentResponder/stanch"
    assert any(arn in line for line in failing.splitlines())
    assert "by cli:U0LEAD2 — comment: not now" in denied
    assert "reason: U0LEAD2: the signature does not match" in denied
    _golden("timeline_failing_80.txt", failing)
    _golden("timeline_denied_80.txt", denied)
    coloured = _printed(timeline_view(_events(FAIL)), colour=True)
    assert "\x1b[1;31mstep.failed\x1b[0m · second" in coloured and "\x1b[31mAccessDenied" in coloured


# ---------------------------------------------------------------------------- stanch incidents
def test_incidents_of_real_runs_at_80_and_wide() -> None:
    rows = list_incidents(FIXTURES)
    assert [r.id for r in rows] == [DEMO, FAIL, DENY]
    narrow = _printed(incidents_view(rows))
    _fits_80(narrow)
    for r in rows:  # ids and runbook names whole, each on a line
        assert any(line.startswith(r.id + " ") for line in narrow.splitlines()), r.id
        assert any(line.strip() == r.runbook for line in narrow.splitlines()), r.runbook
    _golden("incidents_80.txt", narrow)
    wide = _printed(incidents_view(rows), 120).splitlines()
    assert len(wide) == 1 + len(rows)  # one line per incident when it fits
    assert all(r.runbook in line and r.outcome in line for r, line in zip(rows, wide[1:], strict=True))


# ------------------------------------------------------------------------------------ progress
def _replay(events: list[dict[str, Any]], console: Console, **kw: Any) -> Progress:
    p = Progress(console, events[0]["data"]["incident_id"], settle=3600, clock=lambda: 0.0, **kw)
    with p:
        for e in events:
            p.on_event(e)
    return p


def test_piped_progress_of_a_real_demo_run() -> None:
    """`make demo | cat`: one plain line first (the Prefect server takes 10-30 s), then one line per
    event in timeline order even when two threads publish them out of order; bookkeeping left out;
    the event column holds `aws.iam.access_key_deactivated`; nothing wrapped."""
    events = _events(DEMO)
    swapped = list(events)
    i = next(n for n, e in enumerate(events) if e["kind"] == "aws.iam.access_key_deactivated")
    swapped[i - 1], swapped[i] = swapped[i], swapped[i - 1]  # published a moment apart, out of order
    console = _console()
    _replay(swapped, console)
    text = console.export_text()
    lines = text.splitlines()
    assert lines[0] == "starting a local Prefect server…"
    stamps = [ln.split()[0] for ln in lines[1:]]
    assert stamps == sorted(stamps)
    assert not re.search(r"intent\.|action\.observed|slack\.report_posted|report\.written", text)
    starts = [re.match(r"^  \S+  (\S+) +", ln) for ln in lines[1:]]
    column = {m.end() for m in starts if m and len(m.group(1)) <= 30 and m.end() < len(m.string)}
    assert len(column) == 1  # the step column starts at one place, whatever the event
    _golden("progress_demo_piped.txt", text)


def test_live_table_of_a_real_demo_run_at_80() -> None:
    p = _replay(_events(DEMO), _console())
    text = _printed(p._table())
    assert all(len(line) <= 80 for line in text.splitlines())
    assert re.search(r"containment-failed\s+skipped\s+0\.0s\s+the run has not failed", text)
    _golden("live_demo_80.txt", text)


def test_progress_of_a_real_denied_approval() -> None:
    """While waiting: how many of whom, since and until when, and the exact `stanch approve`
    command on a line of its own — one that the real CLI parses. After the denial: "denied"."""
    from typer.testing import CliRunner

    from flows.entrypoints.cli import app

    events = _events(DENY)
    piped = _console()
    _replay(events, piped)
    text = piped.export_text()
    wait = next(ln for ln in text.splitlines() if "approval.requested" in ln)
    assert "2 of U0LEAD1, U0LEAD2, U0ONCALL must approve by 08:10 UTC (waiting since 08:00)" in wait
    command = f"stanch approve {DENY} approve-delete --as <your-slack-id> --key <approver-key>"
    assert f"    {command}" in text.splitlines()
    args = command.replace("<your-slack-id>", "U0LEAD1").replace("<approver-key>", "/keys/lead1").split()[1:]
    # the real CLI parses it: an unknown option fails parsing (exit 2) before --help is acted on
    assert CliRunner().invoke(app, [*args, "--help"]).exit_code == 0
    assert CliRunner().invoke(app, [*args, "--approver", "x", "--help"]).exit_code == 2  # and would catch it
    _golden("progress_denied_piped.txt", text)

    live = _replay(events, _console())
    table = _printed(live._table())
    assert re.search(r"approve-delete\s+denied\s+41\.6s\s+by cli:U0LEAD2: not now", table), table
    _golden("live_denied_80.txt", table)

    # on a terminal, the sentence and the command are printed above the live table, whole
    terminal = _console(colour=True)
    p = Progress(terminal, DENY, settle=3600, clock=lambda: 0.0)
    with p:
        for e in events[:7]:  # up to approval.requested
            p.on_event(e)
    shown = _screen(terminal)
    assert f"  {command}" in shown
    assert f"approve-delete: {approval_wait(events[6], DENY)[0]}; to approve (or deny):" in shown


# ---------------------------------------------------------------------- a real failing run
@pytest.mark.usefixtures("prefect_server")
def test_a_real_failing_run_keeps_tracebacks_off_the_terminal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    from prefect.logging.handlers import PrefectConsoleHandler

    from flows.entrypoints import terminal

    screen = _console(colour=True)
    monkeypatch.setattr(terminal, "console", screen)
    # what `stanch run` has: Prefect's console handler on the root logger, writing to stderr
    prefect_console = PrefectConsoleHandler(stream=sys.stderr)
    logging.getLogger().addHandler(prefect_console)
    try:
        summary = terminal.execute_run(Path(__file__).parent / "cli" / "failing_arn.yaml", {}, "INC-REAL-FAIL",
                                       tmp_path, drill=False, initiator="test")
    finally:
        logging.getLogger().removeHandler(prefect_console)
    out, err = capfd.readouterr()
    lines = _screen(screen)
    shown = "\n".join(lines)
    for stream in (out, err, shown):
        assert "Traceback" not in stream and "ERROR" not in stream
    assert summary["outcome"] == "failed"
    log = tmp_path / "INC-REAL-FAIL" / "prefect.log"
    logged = log.read_text(encoding="utf-8")
    assert "Traceback" in logged and "Task run 'bad-input'" in logged
    assert shown.count(f"Prefect's log:   {log} (") == 1 and shown.count("incident folder:") == 1
    assert not [line for line in lines if len(line) > 80 and str(tmp_path) not in line
                and not line.startswith("incident INC-REAL-FAIL · runbook ")]  # paths: whole
    # the final frame of the live table: the undo on its step's row, no "undo-first" row
    final = shown[shown.rindex("\nstep "):]
    assert re.search(r"^first\s+undone\s", final, re.M) and "undo-first" not in final
    assert re.search(r"^second\s+failed\s.*AccessDenied: User arn:aws:sts::222222222222:", final, re.M)
    # the same run replayed with its durations fixed: the golden of its live table
    events = [{**e, "data": {**e["data"], "duration_s": 0.1}} if "duration_s" in e["data"] else e
              for e in read_events(tmp_path / "INC-REAL-FAIL" / "timeline.jsonl")]
    _golden("live_failing_80.txt", _printed(_replay(events, _console())._table()))
