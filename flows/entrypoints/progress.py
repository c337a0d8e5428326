"""Live per-step progress in the terminal, fed by timeline events.

Owns: ``Progress`` — a rich Live table when stdout is a terminal, one plain line per event
otherwise (CI logs, pipes: in timeline order, ids and commands never wrapped) — and what a person
must do while a run waits for them (``approval_wait``: who, how many, until when, and the exact
``stanch approve`` command on a line of its own). Must not touch: Prefect, boto3, Slack.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from flows.engine.reports import event_detail
from flows.entrypoints.tables import printable


def one_line(text: str, width: int | None = None) -> str:
    """A failure's cause on one line: the first non-empty line (the last one of a traceback).
    With ``width``, cut with an ellipsis — at a word when one ends in the last third of the width,
    else at a character (so that a long id or path at the end still shows its beginning); without
    it the line is whole."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    first = printable((lines[-1] if lines and lines[0].startswith("Traceback") else lines[0]) if lines else "")
    if width is None or len(first) <= width:
        return first
    cut = first.rfind(" ", width * 2 // 3, width - 1)
    return first[: cut if cut != -1 else width - 1].rstrip(" ,;:") + "…"


class OneLine:
    """A table cell that stays on one line at any width: cut with ``…`` at the end (``one_line``),
    never folded onto a second line."""

    def __init__(self, text: str, style: str = "") -> None:
        self.text, self.style = text, style

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(min(len(self.text), 12), len(self.text))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Text(one_line(self.text, max(2, options.max_width)), style=self.style, no_wrap=True,
                   overflow="ellipsis", end="")


def approval_wait(e: dict[str, Any], incident: str) -> tuple[str, str]:
    """(who must approve, how many, since and until when; the exact command to approve) for an
    ``approval.requested`` event. The command is one line that works when typed with your Slack
    id and key filled in (`stanch approve --help`; STANCH_APPROVER_KEY may stand for --key)."""
    data = e.get("data") or {}
    approvers = [str(a) for a in data.get("approvers") or []]
    needed = int(data.get("min_approvals") or 1)
    who = ", ".join(approvers) or "an approver"
    count = f"{needed} of {who}" if len(approvers) > 1 or who.startswith("@") else who
    until = str(data.get("expires_at") or "")[11:16]
    since = str(e.get("ts") or "")[11:16]
    wait = f"{count} must approve by {until} UTC (waiting since {since})"
    command = f"stanch approve {incident} {e.get('step')} --as <your-slack-id> --key <approver-key>"
    return wait, command


_STYLE = {"waiting": "bold magenta", "pending": "dim", "running": "yellow",
          "succeeded": "green", "failed": "bold red", "denied": "bold red", "expired": "bold red",
          "skipped": "dim cyan", "retrying": "magenta", "undoing": "yellow", "undone": "cyan",
          "undo failed": "bold red"}
# A row per step: created by these events only (an undo's own action events name ``undo-<step>``,
# which is not a step of the runbook; the undo shows on the step's own row).
_ROW_EVENTS = {"step.started", "step.skipped", "step.succeeded", "step.failed", "step.already_done",
               "approval.requested", "compensation.started", "compensation.succeeded", "compensation.failed"}
# Bookkeeping left out of the piped log (all of it is in `stanch timeline show`).
_QUIET = {"report.written", "item.started", "item.succeeded", "intent.recorded", "intent.settled",
          "action.observed", "slack.report_posted", "slack.header"}
KIND_WIDTH = 30
"""Piped lines: the event column fits every engine event and the usual action events
(``aws.iam.access_key_deactivated``); a longer kind is followed by two spaces, never cut."""
SETTLE_S = 0.1
"""Piped lines wait this long before printing, so that events published by two threads a moment
apart print in timeline (seq) order."""


class Progress:
    def __init__(self, console: Console, incident: str = "<incident>",
                 waiting: str = "starting a local Prefect server…", settle: float = SETTLE_S,
                 clock: Any = time.monotonic) -> None:
        """``waiting``: what the wait before the first event is (a temporary Prefect server takes
        10-30 s to start when no Prefect API is configured; the caller knows which). ``settle``:
        how long a piped line waits for events published a moment later with a lower seq.
        ``clock``: seconds, for the time column of unfinished steps."""
        self.console = console
        self.waiting = waiting
        self.settle = settle
        self.clock = clock
        self.rows: dict[str, dict[str, Any]] = {}
        self.incident = incident
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._pending: list[tuple[float, int, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._printer: threading.Thread | None = None

    def __enter__(self) -> Progress:
        if self.console.is_terminal:
            self._live = Live(self._view(), console=self.console, refresh_per_second=8, transient=False)
            self._live.__enter__()
        else:  # piped: say what the wait is once (no spinner), then one line per event
            self.console.print(self.waiting, markup=False, highlight=False, soft_wrap=True)
            self._printer = threading.Thread(target=self._print_settled, name="stanch-progress", daemon=True)
            self._printer.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(et, ev, tb)
        if self._printer is not None:
            self._stop.set()
            self._printer.join(timeout=5)
        self.flush()

    def _view(self) -> Any:
        """Before the first event: a spinner saying what the wait is."""
        if self.rows:
            return self._table()
        from rich.spinner import Spinner

        return Spinner("dots", text=self.waiting)

    # ----- state ------------------------------------------------------------------------------
    def _row(self, step: str) -> dict[str, Any]:
        return self.rows.setdefault(step, {"status": "pending", "done": 0, "total": None, "note": "",
                                           "t0": self.clock(), "elapsed": None, "undone": 0})

    def on_event(self, e: dict[str, Any]) -> None:
        kind, step = e["kind"], e.get("step")
        data = e.get("data") or {}
        if kind in ("run.started", "run.resumed") and data.get("incident_id"):
            self.incident = str(data["incident_id"])
        with self._lock:
            if step and (step in self.rows or kind in _ROW_EVENTS):
                self._update(self._row(step), kind, step, e, data)
            if self._live is not None:
                self._live.update(self._table())
                if kind == "approval.requested":  # above the table, the command on a line of its own
                    wait, command = approval_wait(e, self.incident)
                    self.console.print(printable(f"{step}: {wait}; to approve (or deny):"), markup=False,
                                       highlight=False, soft_wrap=True)
                    self.console.print(printable(f"  {command}"), markup=False, highlight=False, soft_wrap=True)
            elif kind not in _QUIET:
                self._pending.append((time.monotonic(), int(e.get("seq") or 0), e))

    def _update(self, row: dict[str, Any], kind: str, step: str, e: dict[str, Any], data: dict[str, Any]) -> None:
        if kind == "step.started":
            row.update(status="running", total=data.get("items"), t0=self.clock())
        elif kind == "step.already_done":
            row.update(status="succeeded", note="in an earlier attempt")
        elif kind in ("item.succeeded", "item.failed"):
            row["done"] += 1
        elif kind == "item.retrying":
            row["note"] = "retrying: " + one_line(data.get("error", ""))
        elif kind == "approval.requested":
            wait, _ = approval_wait(e, self.incident)
            row.update(status="waiting", note=wait)
        elif kind == "approval.approved":
            row["note"] = (f"{data.get('count', '?')} of {data.get('needed', '?')} approved "
                           f"(last: {data.get('approver', '?')})")
        elif kind == "approval.refused":
            row["note"] = f"refused a decision by {data.get('approver', '?')}: " + one_line(data.get("reason", ""))
        elif kind == "approval.granted":
            row.update(status="running", note="")
        elif kind in ("approval.denied", "approval.expired"):
            who = f"by {data.get('approver')}" if data.get("approver") else ""
            row.update(status=kind.split(".")[1], note=one_line(": ".join(
                p for p in (who, str(data.get("comment") or data.get("reason") or "")) if p)))
        elif kind in ("step.succeeded", "step.failed", "step.skipped"):
            if row["status"] not in ("denied", "expired"):  # a denied approval fails its step: say denied
                row["status"] = kind.split(".")[1]
            row["elapsed"] = data.get("duration_s") if data.get("duration_s") is not None else (
                self.clock() - row["t0"])
            if row["status"] not in ("denied", "expired") or not row["note"]:
                row["note"] = one_line(data.get("error") or data.get("reason") or "")
        elif kind == "slack.unavailable":
            row["note"] = "Slack unavailable (recorded)"
        elif kind == "compensation.started":
            row.update(status="undoing", note=f"undo: {data.get('action', '?')}")
        elif kind == "compensation.succeeded":
            row["undone"] += 1
            if row["status"] != "undo failed":
                row.update(status="undone", note=f"undo: {data.get('action', '?')}"
                           + (f" ({row['undone']} items)" if e.get("item") else ""))
        elif kind == "compensation.failed":
            row.update(status="undo failed", note=one_line(data.get("error", "")))

    # ----- piped ------------------------------------------------------------------------------
    def _print_settled(self) -> None:
        while not self._stop.wait(min(self.settle / 2, 1.0)):
            self.flush(older_than=self.settle)

    def flush(self, older_than: float = 0.0) -> None:
        """Print the piped lines of events that arrived more than ``older_than`` s ago, in seq order."""
        with self._lock:
            now = time.monotonic()
            ready = sorted((p for p in self._pending if now - p[0] >= older_than), key=lambda p: p[1])
            self._pending = [p for p in self._pending if now - p[0] < older_than]
            for _, _, e in ready:
                for line in self.lines(e):
                    self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def lines(self, e: dict[str, Any]) -> list[str]:
        """The plain lines for one event: time, event, step[item] and what matters, whole."""
        kind, data = str(e["kind"]), e.get("data") or {}
        where = (e.get("step") or "") + (f"[{e['item']}]" if e.get("item") else "")
        if kind == "approval.requested":
            wait, command = approval_wait(e, self.incident)
            return [_line(e, where, f"{wait}; to approve (or deny):"), printable(f"    {command}")]
        if kind in ("run.started", "run.resumed"):
            extra = " · ".join(str(v) for v in (data.get("runbook"), "DRILL" if data.get("drill") else None) if v)
        elif kind == "run.finished":
            extra = str(data.get("outcome") or "")
        elif kind in ("step.started",):
            extra = f"{data['items']} item(s)" if data.get("items") is not None else ""
        elif kind in ("step.succeeded",):
            extra = f"in {data['duration_s']:.1f}s" if isinstance(data.get("duration_s"), int | float) else ""
        elif kind.startswith(("step.", "item.", "compensation.", "approval.", "run.")):
            extra = one_line(data.get("error") or data.get("reason") or "") or event_detail(e)
        else:  # what an action did (aws.*, slack.*, note, …)
            extra = one_line(event_detail(e))
        return [_line(e, where, extra)]

    # ----- live -------------------------------------------------------------------------------
    def _table(self) -> Table:
        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        table.add_column("step", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("items", justify="right", no_wrap=True)
        table.add_column("time", justify="right", no_wrap=True)
        table.add_column("note")  # one line, an ellipsis at the end: the full cause is in the report
        for step, row in self.rows.items():
            items = f"{row['done']}/{row['total']}" if row["total"] is not None else ""
            elapsed = row["elapsed"] if row["elapsed"] is not None else (
                self.clock() - row["t0"] if row["status"] in ("running", "waiting") else None)
            table.add_row(Text(printable(step)), Text(row["status"], style=_STYLE.get(row["status"], "")), items,
                          f"{elapsed:.1f}s" if elapsed is not None else "",
                          OneLine(row["note"]))
        return table


def _line(e: dict[str, Any], where: str, extra: str) -> str:
    kind = str(e["kind"])
    return printable("  ".join(p for p in (f"  {str(e.get('ts', ''))[11:23]}", kind.ljust(KIND_WIDTH) if where or extra
                                           else kind, where, extra) if p).rstrip())
