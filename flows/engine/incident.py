"""The incident record on disk: ``<store>/<incident-id>/``.

With the PostgreSQL store (``flows.store``) the folder is the local working copy of the record
in the database: every write goes to both, and opening an incident makes the copy equal to the
database (an incident id the database does not hold is refused, whatever the folder holds).

Owns: incident ids, the folder layout (``timeline.jsonl``, ``reports/<step>.md``, ``plan.json``,
``incident.json``, ``postmortem.md``), the redactor shared by everything written there, and
re-rendering the post-mortem from the timeline.

Must not touch: Prefect, boto3, Slack.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flows.engine.redaction import Redactor
from flows.engine.timeline import Timeline
from flows.store import current, materialize, mirror
from integrations.errors import ConfigurationError


def new_incident_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"INC-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2).upper()}"


def _atomic_write(path: Path, text: str, folder: Path | None = None) -> None:
    """Write ``path`` atomically; with the PostgreSQL store, into the database too (``folder``:
    the incident folder ``path`` belongs to)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    if folder is not None:
        mirror(folder, path)


class IncidentNotFound(ConfigurationError):
    """No incident ``ref`` in the store. ``str()`` says where it was looked for (the folders, or
    the database's URL without its password) — for the operator's terminal; ``public`` says the
    same in store-neutral words, for a reply to someone who must not see the server's paths
    (Slack)."""

    def __init__(self, ref: str, where: str) -> None:
        super().__init__(f"no incident {ref!r} {where}")
        self.ref = ref
        self.public = f"no incident {ref!r} in the incident store"


class Incident:
    """One incident folder. Everything written through it is redacted first.

    ``local``: the folder is a record of its own (a folder path opened under the PostgreSQL store,
    e.g. an export), not the working copy of a record in the database — its timeline and documents
    are written to the folder only, never to the database."""

    def __init__(self, store: Path, incident_id: str, redactor: Redactor | None = None, *,
                 local: bool = False) -> None:
        self.id = incident_id
        self.folder = store / incident_id
        self.redactor = redactor or Redactor()
        self.remote = None if local else current()  # the PostgreSQL store (STANCH_STORE=postgresql://…), else None
        self.timeline = Timeline(self.folder, redact=self.redactor, remote=self.remote)
        self.last_postmortem_problem: str | None = None

    @classmethod
    def open_existing(cls, store: Path, ref: str) -> Incident:
        """``ref`` is an incident id in the store or a path to an incident folder.

        With the PostgreSQL store the database is the record: an id (no ``/``) is opened only
        when the database holds it — its local working copy is first made equal to the database —
        and ``IncidentNotFound`` naming the database otherwise (a working copy the database does
        not hold is never used). A path containing ``/`` is opened as that folder, a record of its
        own that nothing writes to the database (``local``)."""
        remote = current()
        if remote is not None and "/" not in ref:
            if not remote.exists(ref):
                raise IncidentNotFound(ref, f"in {remote.display}")
            materialize(remote, ref, store / ref)
            return cls(store, ref)
        p = Path(ref)
        if (p / "timeline.jsonl").exists():
            return cls(p.parent, p.name, local=remote is not None)
        if remote is None and (store / ref / "timeline.jsonl").exists():
            return cls(store, ref)
        raise IncidentNotFound(ref, f"(looked in {store} and at {p})")

    def _write(self, path: Path, text: str) -> None:
        """Write a file of the incident: into the database too when it is the record there."""
        _atomic_write(path, text, self.folder if self.remote is not None else None)

    @property
    def reports_dir(self) -> Path:
        return self.folder / "reports"

    @property
    def plan_path(self) -> Path:
        return self.folder / "plan.json"

    @property
    def postmortem_path(self) -> Path:
        return self.folder / "postmortem.md"

    def write_plan(self, plan_json: dict[str, Any]) -> None:
        self._write(self.plan_path, json.dumps(self.redactor(plan_json), indent=2, default=str) + "\n")

    def read_plan(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.plan_path.read_text(encoding="utf-8"))
        return data

    def write_meta(self, meta: dict[str, Any]) -> None:
        """``incident.json``: what resume/rollback start from. The caller passes inputs as
        ``flows.engine.secret_inputs.public_inputs`` gives them (non-secret verbatim, secret as a marker);
        the redactor here is a safety net (secret-looking material), not the way secrets are kept out."""
        self._write(self.folder / "incident.json", json.dumps(self.redactor(meta), indent=2, default=str) + "\n")

    def read_meta(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.folder / "incident.json").read_text(encoding="utf-8"))
        return data

    def write_report(self, step_id: str, markdown: str) -> Path:
        path = self.reports_dir / f"{step_id}.md"
        self._write(path, self.redactor.text(markdown))
        return path

    def events(self) -> list[dict[str, Any]]:
        return self.timeline.events()

    def render_postmortem(self, template: Path | None = None) -> Path:
        """Re-render ``postmortem.md``; never raises for the template (a failed template gives the
        default post-mortem under a note naming it and the error; see ``last_postmortem_problem``)."""
        from flows.engine import reports  # here, not at the top: reading an incident needs no Jinja2 (~0.8 s)

        text, self.last_postmortem_problem = reports.render_postmortem_safely(
            self.events(), {**self.read_plan(), "incident_id": self.id}, template)
        self._write(self.postmortem_path, self.redactor.text(text))
        return self.postmortem_path
