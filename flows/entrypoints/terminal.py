"""Running a flow in this process with live progress in the terminal, and printing its outcome.

Owns: the shared consoles (stdout, stderr), ``execute_run`` (start a run with live progress),
``run_with_progress`` (Prefect's log lines go to ``<incident>/prefect.log`` meanwhile, not into
the table), ``report_summary`` / ``report_where`` (each said once; paths and commands printed
whole: a terminal wraps them, a pipe gets them in one piece), ``print_diagnostics`` and
``print_error`` (a runbook's or scenario's located diagnostics, each printed once and literally).
Used by ``stanch run|resume|rollback`` (cli) and
``stanch demo`` (demo), which must not import each other. Must not touch: argument parsing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

console = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def print_diagnostics(exc: Any) -> None:
    """A ``RunbookError``: each diagnostic once, then one summary line (``<file>: N errors``).
    Never through Rich markup: a message quotes user text and regexes (``'^[a-z][a-z0-9-]{0,62}$'``)
    that markup would eat. The exception's own text repeats the diagnostics, so it is shown only
    when there are none."""

    diags = list(getattr(exc, "diagnostics", None) or [])
    for d in diags:
        err.print(d.format(), markup=False, highlight=False, soft_wrap=True)
    errors = [d for d in diags if getattr(d, "severity", "error") == "error"]
    if errors:
        summary = f"{errors[0].file}: {len(errors)} error{'s' if len(errors) != 1 else ''}"
    else:
        summary = str(exc)
    print_error(summary)


def print_error(message: str) -> None:
    """``error: <message>`` on stderr, the message literally (it may quote user text or brackets)."""
    from rich.text import Text

    err.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)


def execute_run(runbook_path: Path, given: dict[str, Any], incident_id: str, store: Path, *,
                drill: bool, initiator: str, secrets: dict[str, str] | None = None,
                where: bool = True) -> dict[str, Any]:
    """Run the flow in this process with live progress; returns the summary dict. ``given`` holds
    secret inputs as references; their values (``secrets``) stay in this process (never in Prefect).
    ``where=False``: the caller says where the record is (``report_where``) after its own lines."""
    from rich.markup import escape

    from flows.engine import secret_inputs
    from flows.engine.runtime import run_runbook

    store.mkdir(parents=True, exist_ok=True)
    label = (f"incident [bold]{incident_id}[/] · runbook {escape(str(runbook_path))} · "
             f"{'DRILL (sandbox only)' if drill else 'live'}")
    secret_inputs.deposit(incident_id, secrets or {})
    try:
        summary = run_with_progress(run_runbook, label, store, runbook_path=str(runbook_path), inputs=given,
                                     incident_id=incident_id, store=str(store.resolve()), drill=drill,
                                     initiator=initiator)
    finally:
        secret_inputs.discard(incident_id)
    console.print()
    report_summary(summary, where=where)
    return summary


def run_with_progress(flow_fn: Any, label: str, folder_root: Path, **params: Any) -> dict[str, Any]:
    """Run ``flow_fn`` with the live table; Prefect's log lines go to ``<incident>/prefect.log``
    (the summary's ``prefect_log`` names it and counts its lines when anything was logged)."""
    incident_id = params["incident_id"]
    from prefect.settings import PREFECT_API_URL

    from flows.engine.runtime import add_listener
    from flows.entrypoints.prefect_log import logs_to_file
    from flows.entrypoints.progress import Progress

    console.print(label, soft_wrap=True)
    progress = Progress(console, incident_id, waiting="starting the run…" if PREFECT_API_URL.value()
                        else "starting a local Prefect server…")
    remove = add_listener(progress.on_event)
    log_path = folder_root / incident_id / "prefect.log"
    try:
        with logs_to_file(log_path) as logged, progress:
            state: Any = flow_fn(return_state=True, **params)
    finally:
        remove()
    summary = state.result(raise_on_failure=False) if (state.is_completed() or state.is_failed()) else None
    if not isinstance(summary, dict):
        summary = {"incident_id": incident_id, "outcome": "failed", "folder": str(folder_root / incident_id),
                   "failed_steps": [], "error": str(summary)}
    if logged.records:
        summary = {**summary, "prefect_log": {"path": str(log_path), "records": logged.records}}
    return summary


def _say(text: str) -> None:
    """A line holding a path, an id or a command: never wrapped by us (a pipe gets it whole)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def report_where(summary: dict[str, Any], *, verify: bool | str = False) -> None:
    """Where the record is, each said once: the incident folder, the post-mortem, (with
    ``verify``) the command that checks the timeline (``verify`` a string: that command), and Prefect's
    log when anything went there."""
    folder = Path(summary.get("folder", ""))
    _say(f"incident folder: {folder}")
    if (folder / "postmortem.md").exists():
        _say(f"post-mortem:     {folder / 'postmortem.md'}")
    if verify:
        _say(f"verify:          {verify if isinstance(verify, str) else f'stanch timeline verify {folder}'}")
    log = summary.get("prefect_log") or {}
    if log:
        n = int(log.get("records", 0))
        _say(f"Prefect's log:   {log.get('path')} ({n} warning{'s' if n != 1 else ''} or error{'s' if n != 1 else ''}"
             ", with tracebacks)")


def report_summary(summary: dict[str, Any], *, where: bool = True) -> None:
    """The outcome in one line (and what a rollback did not undo), then ``report_where``."""
    outcome = summary.get("outcome")
    if outcome == "succeeded":
        console.print("[bold green]contained[/] — all required steps succeeded")
        for step in summary.get("declined_steps") or []:
            console.print(f"[yellow]declined[/] — approval {step!r} was denied (on_deny: skip): it and the "
                          "steps that need it were skipped", soft_wrap=True)
    elif outcome in ("rolled back", "partly rolled back", "nothing undone", "nothing to undo"):
        report_rollback(summary)
    else:
        from rich.markup import escape

        failed = ", ".join(summary.get("failed_steps") or []) or summary.get("error", "see the timeline")
        console.print(f"[bold red]run {outcome}[/] — {escape(str(failed))}", soft_wrap=True)
    if where:
        report_where(summary)


def report_rollback(summary: dict[str, Any]) -> None:
    """What a rollback undid and what it did not (and why), newest first."""
    undone, not_undone = summary.get("undone") or [], summary.get("not_undone") or []
    outcome = summary.get("outcome")
    if outcome == "rolled back":
        console.print(f"[bold green]rolled back[/] — undid {len(undone)} step(s): {', '.join(undone) or 'none'}",
                      soft_wrap=True)
    elif outcome == "partly rolled back":
        console.print(f"[bold yellow]partly rolled back[/] — undid {len(undone)} step(s): {', '.join(undone)}",
                      soft_wrap=True)
    elif outcome == "nothing to undo":
        console.print("[bold green]nothing to undo[/] — no step changed anything")
    else:
        console.print("[bold red]nothing undone[/] — no step that changed something declares a compensation")
    for row in not_undone:
        _say(f"  not undone: {row['step']}: {row['reason']}")


