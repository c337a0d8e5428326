"""Listing the incidents of a store: what ``stanch incidents`` shows.

Owns: ``IncidentRow`` (id, runbook, started, outcome, drill or live, scenario and score for a
drill) and ``list_incidents`` which reads them from the folder store (``<store>/<id>/``:
``incident.json``, the timeline's run/rollback events, ``scorecard.json`` when a drill left one).
A folder that is not an incident (no timeline) is skipped; an incident whose files are unreadable
is listed with outcome ``unreadable`` rather than hidden, so nothing disappears silently.

Must not touch: Prefect, boto3, Slack; it only reads.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from flows.engine.timeline import FILENAME, read_events

Kind = Literal["drill", "live"]


class IncidentRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    runbook: str
    started_at: str | None
    outcome: str
    kind: Kind
    severity: str | None = None
    scenario: str | None = None
    score: int | None = None


def _outcome(events: list[dict[str, Any]]) -> tuple[str, str | None, str | None]:
    """(outcome, started_at, severity) from the run/rollback events: the last decisive one wins.
    A run that started but never finished is ``unfinished`` (running, waiting, or crashed:
    ``stanch resume`` tells which)."""
    outcome, started, severity = "unfinished", None, None
    for e in events:
        kind, data = e.get("kind"), e.get("data") or {}
        if kind == "run.started":
            started = started or e.get("ts")
            severity = data.get("severity") or severity
        elif kind == "run.finished":
            outcome = str(data.get("outcome") or "finished")
        elif kind == "run.aborted":
            outcome = "aborted"
        elif kind == "run.start_failed":
            outcome = "failed to start"
        elif kind == "rollback.started":
            outcome = "rolling back"
        elif kind == "rollback.finished":
            outcome = str(data.get("outcome") or "rolled back")
    return outcome, started, severity


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def read_row(folder: Path) -> IncidentRow:
    try:
        meta = _read_json(folder / "incident.json")
        outcome, started, severity = _outcome(list(read_events(folder / FILENAME)))
        card = _read_json(folder / "scorecard.json")
    except (OSError, ValueError) as exc:
        return IncidentRow(id=folder.name, runbook="?", started_at=None, kind="live",
                           outcome=f"unreadable ({type(exc).__name__})")
    score = card.get("score")
    return IncidentRow(
        id=folder.name, runbook=str(meta.get("runbook") or "?"),
        started_at=started or meta.get("created_at"), outcome=outcome,
        kind="drill" if meta.get("drill") or card else "live", severity=severity,
        scenario=card.get("scenario"), score=score if isinstance(score, int) else None)


def list_incidents(store: Path, kind: Kind | None = None) -> list[IncidentRow]:
    """Every incident in ``store`` (of ``kind`` when given), newest first."""
    if not store.is_dir():
        return []
    rows = [read_row(f) for f in store.iterdir() if f.is_dir() and (f / FILENAME).is_file()]
    if kind:
        rows = [r for r in rows if r.kind == kind]

    def when(r: IncidentRow) -> datetime:
        try:
            ts = datetime.fromisoformat((r.started_at or "").replace("Z", "+00:00"))
        except ValueError:
            return datetime.min.replace(tzinfo=UTC)
        return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    return sorted(rows, key=lambda r: (when(r), r.id), reverse=True)
