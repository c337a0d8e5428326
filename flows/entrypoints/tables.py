"""What ``stanch actions``, ``stanch timeline show`` and ``stanch incidents`` print: it must read
well at 80 columns and when piped (issue 13).

Owns: ``actions_view`` (every action: its name, what it does, and ``changes things · idempotent ·
undo: <action>`` with the undo never split from its action), ``timeline_view`` (every event: seq,
time, event and step on one line, its decisive details under it in full) and ``incidents_view``
(one line per incident when it fits, else the runbook under the id).

The rule for all three: ids, event kinds, step names, paths and commands are never split, cut or
folded by us — free text wraps at spaces, and a word longer than the line stands alone on its
own line, whole (a terminal wraps it; a pipe gets it in one piece). Print them with
``soft_wrap=True`` so that rich does not crop such a line. Failures are red on a terminal; piped
output has no colour (rich drops it). Must not touch: argument parsing, the registry or the
timeline themselves, or how an event's detail is worded (``flows.engine.reports.event_detail``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

from flows.engine.reports import event_detail

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: object) -> str:
    """``text`` safe for a terminal: control characters (ESC of an escape sequence that would clear
    the screen, retitle the window or forge a link; CR, backspace, C1 CSI) shown as ``\\xNN``,
    never sent raw. Event data holds what others wrote: a Slack approver's comment, an AWS error."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


_BAD = ("failed", "denied", "expired", "unavailable", "refused", "aborted", "start_failed")
_GOOD = ("succeeded", "granted", "approved")


def wrap_words(text: str, width: int) -> list[str]:
    """Greedy word wrap at spaces only: a word longer than ``width`` gets a line of its own, whole."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return lines


def _block(text: str, indent: int, width: int, style: str = "") -> Iterator[Text]:
    for line in wrap_words(printable(" ".join(str(text).split())), max(20, width - indent)):
        out = Text(" " * indent, no_wrap=True, overflow="ignore", end="\n")
        out.append(line, style=style)
        yield out


class _Lines:
    """A renderable made of whole lines, wrapped by ``build(width)`` for the console's width."""

    def __init__(self, build: Any) -> None:
        self.build = build

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from self.build(options.max_width)


# ----------------------------------------------------------------------------- stanch actions
def actions_view(registry: Any) -> _Lines:
    """Each action: its name (bold), what it does (wrapped at words, indented), then
    ``changes things · idempotent · undo: <action>`` — ``undo: <action>`` goes to a line of its
    own rather than being split when the line would be too long."""

    def build(width: int) -> Iterable[Any]:
        yield Text("stanch actions", style="bold", end="\n")
        for spec in registry.specs():
            yield Text("")
            yield Text(f"  {spec.name}", style="bold", no_wrap=True, overflow="ignore")
            yield from _block(spec.summary, 6, width)
            flags = ["changes things" if spec.mutating else "read-only",
                     "idempotent" if spec.idempotent else "not idempotent"]
            undo = (f"undo: {spec.compensation}" if spec.compensation else "no undo") if spec.mutating else ""
            line = " · ".join(flags + ([undo] if undo else []))
            if undo and 6 + len(line) > width:
                yield Text("      " + " · ".join(flags), style="dim", no_wrap=True, overflow="ignore")
                yield Text("      " + undo, style="dim", no_wrap=True, overflow="ignore")
            else:
                yield Text("      " + line, style="dim", no_wrap=True, overflow="ignore")
    return _Lines(build)


# ----------------------------------------------------------------------- stanch timeline show
DETAIL_LIMIT = 800
"""A detail longer than this ends at the last whole word before it, then `…` (the full event is
in timeline.jsonl and the step's report): an id is never cut."""


def _detail(e: dict[str, Any]) -> str:
    text = event_detail(e, limit=1_000_000)
    if len(text) <= DETAIL_LIMIT:
        return text
    cut = text.rfind(" ", 0, DETAIL_LIMIT)
    return (text[:cut] if cut > 0 else text[:DETAIL_LIMIT]).rstrip(" ;,") + " …"


def _style(kind: str) -> str:
    if kind.endswith(_BAD):
        return "bold red"
    if kind.endswith(_GOOD):
        return "green"
    return ""


def timeline_view(events: list[dict[str, Any]], title: str = "") -> _Lines:
    """``seq  HH:MM:SS  event · step[item]`` on one line (never split; the date on a line of its
    own when it changes), the event's decisive details under it, wrapped at spaces only."""
    shown = [e for e in events if e.get("kind") not in ("item.started", "report.written")]
    seq_w = max([len(str(e.get("seq", ""))) for e in shown] + [1])
    indent = seq_w + 2 + 8 + 2  # the details start under the event

    def build(width: int) -> Iterable[Any]:
        if title:
            yield Text(printable(title), style="bold", end="\n")
        day = ""
        for e in shown:
            ts = str(e.get("ts", ""))
            date, _, clock = ts.partition("T")
            if date != day:
                yield Text(printable(date), style="bold", end="\n")
                day = date
            kind = printable(e.get("kind", ""))
            style = _style(kind)
            where = printable((e.get("step") or "") + (f"[{e['item']}]" if e.get("item") else ""))
            head = Text(printable(f"{str(e.get('seq', '')).rjust(seq_w)}  {clock[:8]:<8}  "), no_wrap=True,
                        overflow="ignore")
            head.append(kind, style=style or "bold")
            if where:
                head.append(f" · {where}")
            yield head
            detail = _detail(e)
            if detail:
                yield from _block(detail, indent, width, "red" if style == "bold red" else "")
    return _Lines(build)


# ---------------------------------------------------------------------------- stanch incidents
def _outcome_style(outcome: str) -> str:
    if outcome in ("succeeded", "rolled back", "nothing to undo"):
        return "green"
    return "yellow" if outcome in ("unfinished", "rolling back", "partly rolled back") else "red"


def incidents_view(rows: list[Any]) -> _Lines:
    """One line per incident (id, runbook, started, outcome, drill or live) when that fits the
    width; otherwise id, started, outcome and kind on the line and the runbook (and a drill's
    scenario) under the id. Nothing is ever split or cut."""
    cells = [(printable(r.id), printable(r.runbook), printable((r.started_at or "?").replace("T", " ")[:16]),
              printable(r.outcome), printable(r.kind + (f" {r.scenario} ({r.score})" if r.scenario else "")), r)
             for r in rows]

    def build(width: int) -> Iterable[Any]:
        heads = ("incident", "runbook", "started (UTC)", "outcome", "kind")
        widths = [max([len(h)] + [len(str(c[i])) for c in cells]) for i, h in enumerate(heads)]
        if sum(widths) + 2 * (len(widths) - 1) <= width:
            table = Table(box=None, pad_edge=False, header_style="bold")
            for h in heads:
                table.add_column(h, no_wrap=True)
            for iid, runbook, started, outcome, kind, _ in cells:
                table.add_row(iid, runbook, started, Text(outcome, style=_outcome_style(outcome)), kind)
            yield table
            return
        w = [max([len(h)] + [len(str(c[i])) for c in cells]) for i, h in ((0, "incident"), (2, "started (UTC)"),
                                                                            (3, "outcome"))]
        yield Text(f"{'incident':<{w[0]}}  {'started (UTC)':<{w[1]}}  {'outcome':<{w[2]}}  kind", style="bold",
                   no_wrap=True, overflow="ignore")
        yield Text("  runbook", style="bold dim", no_wrap=True, overflow="ignore")
        for iid, runbook, started, outcome, _, r in cells:
            line = Text(f"{iid:<{w[0]}}  {started:<{w[1]}}  ", no_wrap=True, overflow="ignore")
            line.append(f"{outcome:<{w[2]}}", style=_outcome_style(outcome))
            line.append(f"  {r.kind}" + (f" ({r.score})" if r.scenario else ""))
            yield line
            yield Text(f"  {runbook}" + (f" · scenario {printable(r.scenario)}" if r.scenario else ""), style="dim",
                       no_wrap=True, overflow="ignore")
    return _Lines(build)
