"""The names and tags of the flow runs stanch creates, so the Prefect UI's runs list can be
filtered and read.

Owns: the run name (``run_name``: ``compromised-dependency · INC-… (drill)``, ``rollback ·
compromised-dependency · INC-…``) and the tag vocabulary — ``incident:<id>`` (``incident_tag``,
``incident_of``: how stanch finds an incident's runs, so their names can be anything readable),
``runbook:<name>``, ``severity:<sev>``, ``drill`` or ``live``, ``scenario:<name>`` (drills),
``rollback`` (``run_tags``). ``flows.engine.runtime.label_current_run`` puts them on the run
being executed, whatever created it (the CLI's in-process run, the Slack launchers, the worker
or ``serve`` executing a deployment run, a drill, a schedule).
Must not touch: Prefect (pure strings: the approver's CLI uses them without importing it).
"""

from __future__ import annotations

from collections.abc import Iterable


def incident_tag(incident_id: str) -> str:
    """The tag every flow run of one incident carries (its runs, rollback, resumed attempts)."""
    return f"incident:{incident_id}"


def incident_of(tags: Iterable[str] | None) -> str | None:
    """The incident id of a flow run, from its ``incident:<id>`` tag (never from its name)."""
    return next((t.split(":", 1)[1] for t in tags or () if t.startswith("incident:")), None)


def run_name(runbook: str, incident_id: str, *, drill: bool, rollback: bool = False) -> str:
    """A flow run's readable name: ``compromised-dependency · INC-20261206-101500-AB12 (drill)``;
    a rollback's starts with ``rollback · ``. Lookups go by ``incident_tag``, never by name."""
    return f"{'rollback · ' if rollback else ''}{runbook} · {incident_id}{' (drill)' if drill else ''}"


def run_tags(runbook: str, severity: str | None, *, drill: bool, scenario: str | None = None,
             extra: Iterable[str] = ()) -> list[str]:
    tags = [f"runbook:{runbook}", "drill" if drill else "live"]
    if severity:
        tags.append(f"severity:{severity}")
    if scenario:
        tags.append(f"scenario:{scenario}")
    return [*tags, *extra]
