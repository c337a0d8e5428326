"""Listing the incidents of a store: what ``stanch incidents`` and Slack's ``/stanch list`` show.

Owns: ``digests`` — per incident only what a listing needs (``incident.json``, ``scorecard.json``
when a drill left one, the timeline events of the kinds asked for, when it last moved) from either
store: the folder (``<store>/<id>/``) or PostgreSQL (``STANCH_STORE=postgresql://…``: one query
per table, never the whole records, never the local working copy) — and ``IncidentRow`` /
``list_incidents`` built on it (id, runbook, started, outcome, drill or live, scenario and score).
A folder that is not an incident (no timeline) is skipped; an incident whose files are unreadable
is listed with outcome ``unreadable`` rather than hidden, so nothing disappears silently.

Must not touch: Prefect, boto3, Slack; it only reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from flows.engine.timeline import FILENAME, read_events
from flows.store import current

Kind = Literal["drill", "live"]
LISTING_KINDS = ("run.", "rollback.")  # all `stanch incidents` reads of a timeline
_DOCUMENTS = ("incident.json", "scorecard.json")


@dataclass
class Digest:
    """One incident as a listing sees it: ``events`` holds only the kinds asked for."""

    id: str
    meta: dict[str, Any] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    active_at: float = 0.0  # when the timeline last moved (epoch seconds)
    problem: str | None = None  # unreadable: why


def _json_object(raw: bytes | None) -> dict[str, Any]:
    data = json.loads(raw) if raw else {}
    return data if isinstance(data, dict) else {}


def _wanted(event: Any, prefixes: tuple[str, ...]) -> bool:
    return isinstance(event, dict) and str(event.get("kind", "")).startswith(prefixes)


def _folder_digest(folder: Path, prefixes: tuple[str, ...]) -> Digest:
    d = Digest(folder.name)
    try:
        path = folder / FILENAME
        d.active_at = path.stat().st_mtime
        d.meta = _json_object((folder / "incident.json").read_bytes() if (folder / "incident.json").is_file() else None)
        d.card = _json_object((folder / "scorecard.json").read_bytes()
                              if (folder / "scorecard.json").is_file() else None)
        if prefixes:
            needles = [b'"kind":"' + p.encode() for p in prefixes]
            with path.open("rb") as fh:  # parse the lines that may be of a wanted kind (or are no event)
                for raw in fh:
                    if (any(n in raw for n in needles) or b'"kind":"' not in raw) and raw.strip() \
                            and _wanted(event := json.loads(raw), prefixes):
                        d.events.append(event)
    except (OSError, ValueError) as exc:
        d.problem = type(exc).__name__
    return d


def digests(store: Path, prefixes: tuple[str, ...] = LISTING_KINDS) -> list[Digest]:
    """Every incident of the store (``store``: the folder store; ignored for PostgreSQL, which is
    read instead of the local working copy), with only what a listing needs. Unordered."""
    remote = current()
    if remote is None:
        if not store.is_dir():
            return []
        return [_folder_digest(f, prefixes) for f in store.iterdir() if f.is_dir() and (f / FILENAME).is_file()]
    out = []
    for incident, listed in remote.listing(prefixes, _DOCUMENTS).items():
        d = Digest(incident, active_at=listed.active_at)
        try:
            d.meta = _json_object(listed.documents.get("incident.json"))
            d.card = _json_object(listed.documents.get("scorecard.json"))
            d.events = [e for e in (json.loads(line) for line in listed.events) if _wanted(e, prefixes)]
        except ValueError as exc:
            d.problem = type(exc).__name__
        out.append(d)
    return out


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


def rollback_outcome(failed: int, undone: list[Any], not_undone: list[Any]) -> str:
    """What a rollback did, in the words `stanch rollback` prints (docs/operations.md)."""
    if failed:
        return "rollback incomplete"
    if not_undone and not undone:
        return "nothing undone"
    if not undone:
        return "nothing to undo"
    return "partly rolled back" if not_undone else "rolled back"


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
        elif kind == "rollback.finished":  # records before the outcome was recorded: derived the same way
            outcome = str(data.get("outcome") or rollback_outcome(
                int(data.get("failed") or 0), list(data.get("undone") or []), list(data.get("not_undone") or [])))
    return outcome, started, severity


def events_of(store: Path, incident: str) -> list[dict[str, Any]]:
    """One incident's whole timeline from the store (PostgreSQL: the database, not a working copy)."""
    remote = current()
    if remote is None:
        return list(read_events(store / incident / FILENAME))
    return [json.loads(line) for _, line in remote.lines(incident)]


def read_row(d: Digest) -> IncidentRow:
    if d.problem is not None:
        return IncidentRow(id=d.id, runbook="?", started_at=None, kind="live", outcome=f"unreadable ({d.problem})")
    outcome, started, severity = _outcome(d.events)
    score = d.card.get("score")
    return IncidentRow(
        id=d.id, runbook=str(d.meta.get("runbook") or "?"),
        started_at=started or d.meta.get("created_at"), outcome=outcome,
        kind="drill" if d.meta.get("drill") or d.card else "live", severity=severity,
        scenario=d.card.get("scenario"), score=score if isinstance(score, int) else None)


def list_incidents(store: Path, kind: Kind | None = None) -> list[IncidentRow]:
    """Every incident in the store (of ``kind`` when given), newest first."""
    rows = [read_row(d) for d in digests(store)]
    if kind:
        rows = [r for r in rows if r.kind == kind]

    def when(r: IncidentRow) -> datetime:
        try:
            ts = datetime.fromisoformat((r.started_at or "").replace("Z", "+00:00"))
        except ValueError:
            return datetime.min.replace(tzinfo=UTC)
        return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    return sorted(rows, key=lambda r: (when(r), r.id), reverse=True)
