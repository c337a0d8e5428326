"""Run the hostile terminal corpus (tests/hostile/terminal/*.json; format in its README): event
text written by others never reaches the terminal as control sequences — not through `stanch
timeline show`, the piped progress lines, the live table or the approval lines above it — and
rich markup in it is printed literally, never interpreted."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from flows.entrypoints.progress import Progress
from flows.entrypoints.tables import timeline_view

CASES = sorted((Path(__file__).parent / "terminal").glob("*.json"))
RICH_SGR = re.compile(r"\x1b\[[0-9;]*m")  # the colours rich itself adds on a terminal


def _terminal() -> Console:
    return Console(file=io.StringIO(), width=80, force_terminal=True, color_system="standard")


def _plain() -> Console:
    return Console(file=io.StringIO(), width=80)


def _out(console: Console) -> str:
    return console.file.getvalue()  # type: ignore[attr-defined,no-any-return]


def _no_control(text: str) -> None:
    left = RICH_SGR.sub("", text)
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", left), repr(left)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_hostile_event_text_is_shown_not_obeyed(path: Path) -> None:
    case = json.loads(path.read_text(encoding="utf-8"))
    event: dict[str, Any] = case["event"]
    start = {"seq": 1, "ts": "2026-03-31T04:00:00.000Z", "kind": "run.started", "step": None, "item": None,
             "actor": "stanch", "data": {"incident_id": "INC-HOSTILE"}}
    started = {"seq": 2, "ts": "2026-03-31T04:00:01.000Z", "kind": "step.started", "step": event["step"],
               "item": None, "actor": "stanch", "data": {}}
    events = [start, started, event]
    outputs: list[str] = []
    for console in (_terminal(), _plain()):  # stanch timeline show
        console.print(timeline_view(events, "timeline of INC-HOSTILE (UTC)"), soft_wrap=True)
        outputs.append(_out(console))
    piped = _plain()  # stanch run | cat
    p = Progress(piped, "INC-HOSTILE", settle=3600, clock=lambda: 0.0)
    with p:
        for e in events:
            p.on_event(e)
    outputs.append(_out(piped))
    table = _terminal()  # the live table's final frame
    table.print(p._table())
    outputs.append(_out(table))
    for text in outputs:
        _no_control(text)
        for raw in case["raw"]:
            assert raw not in text, (raw, text)
    live = _terminal()  # on a terminal: Live's own cursor moves are fine, the payload's sequences are not
    lp = Progress(live, "INC-HOSTILE", settle=3600, clock=lambda: 0.0)
    with lp:
        for e in events:
            lp.on_event(e)
    for raw in case["raw"]:
        if raw != "\r":
            assert raw not in _out(live), raw
    if "[link=" in json.dumps(event):
        assert "[link=https://evil.example]click[/link]" in outputs[1] and "\x1b]8;" not in outputs[0]
