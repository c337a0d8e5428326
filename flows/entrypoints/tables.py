"""Terminal tables that must read well at 80 columns and when piped (issue 13).

Owns: ``actions_table`` (``stanch actions``: one row per action, what it does and its undo under
it) and ``timeline_table`` (``stanch timeline show``: every event with its decisive details in
full, failures in red on a terminal; plain text when piped, as rich drops colour there).
Must not touch: argument parsing, the registry or the timeline themselves.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from flows.engine.reports import event_detail

_BAD = ("failed", "denied", "expired", "unavailable", "refused")
_GOOD = ("succeeded", "granted", "approved")


def actions_table(registry: Any) -> Table:
    """Two columns whatever the width: the action name (never wrapped) and what it does, with
    ``changes things · idempotent · undo: …`` (or ``read-only``) on the next line."""
    table = Table(title="stanch actions", box=box.SIMPLE_HEAD, expand=False, show_lines=False)
    table.add_column("action", no_wrap=True, style="bold")
    table.add_column("what it does", overflow="fold", ratio=1, min_width=24)
    for spec in registry.specs():
        flags = ["changes things" if spec.mutating else "read-only",
                 "idempotent" if spec.idempotent else "not idempotent"]
        if spec.mutating:
            flags.append(f"undo: {spec.compensation}" if spec.compensation else "no undo")
        cell = Text(spec.summary)
        cell.append("\n" + " · ".join(flags), style="dim")
        table.add_row(spec.name, cell)
    return table


def _style(kind: str) -> str:
    if kind.endswith(_BAD):
        return "bold red"
    if kind.endswith(_GOOD):
        return "green"
    return ""


def timeline_table(events: list[dict[str, Any]], title: str = "") -> Table:
    """seq, time (UTC, date shown when it changes), event and step, then the decisive details."""
    table = Table(title=title or None, box=box.SIMPLE_HEAD, show_lines=False)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("time", no_wrap=True)
    table.add_column("event · step", overflow="fold", max_width=34)
    table.add_column("detail", overflow="fold", ratio=1, min_width=20)
    day = ""
    for e in events:
        if e.get("kind") in ("item.started", "report.written"):
            continue
        ts = str(e.get("ts", ""))
        date, _, clock = ts.partition("T")
        when = clock[:8] if date == day else f"{date}\n{clock[:8]}"
        day = date
        where = (e.get("step") or "") + (f"[{e['item']}]" if e.get("item") else "")
        kind = str(e.get("kind", ""))
        style = _style(kind)
        head = Text(kind, style=style or "bold")
        if where:
            head.append("\n" + where)
        table.add_row(str(e.get("seq", "")), when, head, Text(event_detail(e), style="red" if style == "bold red"
                                                               else ""))
    return table
