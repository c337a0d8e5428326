"""Live per-step progress in the terminal, fed by timeline events.

Owns: ``Progress`` — a rich Live table when stdout is a terminal, one plain line per event
otherwise (CI logs, pipes). Must not touch: Prefect, boto3, Slack.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table


def one_line(text: str, width: int) -> str:
    """A failure's cause on one line: the first non-empty line (no traceback), cut at a word."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    first = (lines[-1] if lines and lines[0].startswith("Traceback") else lines[0]) if lines else ""
    if len(first) <= width:
        return first
    cut = first.rfind(" ", width // 2, width - 1)
    return first[: cut if cut != -1 else width - 1].rstrip(" ,;:") + "…"


_STYLE = {"waiting for approval": "bold magenta",
          "pending": "dim", "running": "yellow", "succeeded": "green", "failed": "bold red",
          "skipped": "dim cyan", "retrying": "magenta"}


class Progress:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.rows: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._t0 = time.monotonic()
        self.incident = "<incident>"

    def __enter__(self) -> Progress:
        if self.console.is_terminal:
            self._live = Live(self._view(), console=self.console, refresh_per_second=8, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(et, ev, tb)

    def _view(self) -> Any:
        """Before the first event: a spinner saying what the wait is (the temporary Prefect server
        takes 10-30 s to start when no PREFECT_API_URL is set)."""
        if self.rows:
            return self._table()
        import os

        from rich.spinner import Spinner

        what = ("starting a local Prefect server…" if not os.environ.get("PREFECT_API_URL")
                else "starting the run…")
        return Spinner("dots", text=what)

    def _row(self, step: str) -> dict[str, Any]:
        return self.rows.setdefault(step, {"status": "pending", "done": 0, "total": None, "note": "",
                                           "t0": time.monotonic(), "elapsed": None})

    def on_event(self, e: dict[str, Any]) -> None:
        kind, step = e["kind"], e.get("step")
        if kind == "run.started":
            self.incident = str((e.get("data") or {}).get("incident_id") or self.incident)
        with self._lock:
            if step:
                row = self._row(step)
                data = e.get("data") or {}
                if kind == "step.started":
                    row.update(status="running", total=data.get("items"), t0=time.monotonic())
                elif kind in ("item.succeeded", "item.failed"):
                    row["done"] += 1
                elif kind == "item.retrying":
                    row["note"] = one_line(f"retrying: {data.get('error', '')}", 70)
                elif kind == "approval.requested":
                    who = ", ".join(str(a) for a in data.get("approvers") or [])
                    until = str(data.get("expires_at") or "")[11:16]
                    row.update(status="waiting for approval")
                    row["note"] = (f"{who} must approve since {e.get('ts', '')[11:16]} until {until} UTC: "
                                   f"stanch approve {self.incident} {step}")
                elif kind in ("approval.granted", "approval.denied", "approval.expired"):
                    row.update(status="running" if kind == "approval.granted" else kind.split(".")[1], note="")
                elif kind in ("step.succeeded", "step.failed", "step.skipped"):
                    row["status"] = kind.split(".")[1]
                    row["elapsed"] = time.monotonic() - row["t0"]
                    row["note"] = one_line(data.get("error") or data.get("reason") or "", 90)
                elif kind == "slack.unavailable":
                    row["note"] = "Slack unavailable (recorded)"
                elif kind.startswith("compensation."):
                    row["note"] = f"undo {kind.split('.')[1]}"
            if self._live is not None:
                self._live.update(self._table())
            elif kind not in ("report.written", "item.started"):
                where = (step or "") + (f"[{e['item']}]" if e.get("item") else "")
                extra = one_line((e.get("data") or {}).get("error") or (e.get("data") or {}).get("reason") or "", 200)
                if kind == "approval.requested" and step in self.rows:
                    extra = self.rows[step]["note"]
                self.console.print(f"  {e['ts'][11:23]}  {kind:<22} {where} {extra}".rstrip(),
                                   markup=False, soft_wrap=True)

    def _table(self) -> Table:
        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        table.add_column("step")
        table.add_column("status")
        table.add_column("items", justify="right")
        table.add_column("time", justify="right")
        table.add_column("note", overflow="fold")
        for step, row in self.rows.items():
            items = f"{row['done']}/{row['total']}" if row["total"] is not None else ""
            elapsed = row["elapsed"] if row["elapsed"] is not None else (
                time.monotonic() - row["t0"] if row["status"] == "running" else None)
            table.add_row(step, f"[{_STYLE.get(row['status'], '')}]{row['status']}[/]", items,
                          f"{elapsed:.1f}s" if elapsed is not None else "", row["note"])
        return table
