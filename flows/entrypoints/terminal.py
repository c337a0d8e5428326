"""Running a flow in this process with live progress in the terminal, and printing its outcome.

Owns: the shared consoles (stdout, stderr), ``execute_run`` (start a run with live progress),
``run_with_progress``, ``report_summary``, ``print_diagnostics`` and ``print_error`` (a runbook's or scenario's located
diagnostics, each printed once and literally). Used by ``stanch run|resume|rollback`` (cli) and
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
                drill: bool, initiator: str, secrets: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the flow in this process with live progress; returns the summary dict. ``given`` holds
    secret inputs as references; their values (``secrets``) stay in this process (never in Prefect)."""
    from flows.engine import secret_inputs
    from flows.engine.runtime import run_runbook

    store.mkdir(parents=True, exist_ok=True)
    label = (f"incident [bold]{incident_id}[/] · runbook {runbook_path} · "
             f"{'DRILL (sandbox only)' if drill else 'live'}")
    secret_inputs.deposit(incident_id, secrets or {})
    try:
        summary = run_with_progress(run_runbook, label, store, runbook_path=str(runbook_path), inputs=given,
                                     incident_id=incident_id, store=str(store.resolve()), drill=drill,
                                     initiator=initiator)
    finally:
        secret_inputs.discard(incident_id)
    console.print()
    report_summary(summary)
    return summary


def run_with_progress(flow_fn: Any, label: str, folder_root: Path, **params: Any) -> dict[str, Any]:
    incident_id = params["incident_id"]
    from flows.engine.runtime import add_listener
    from flows.entrypoints.progress import Progress

    console.print(label)
    progress = Progress(console)
    remove = add_listener(progress.on_event)
    try:
        with progress:
            state: Any = flow_fn(return_state=True, **params)
    finally:
        remove()
    summary = state.result(raise_on_failure=False) if (state.is_completed() or state.is_failed()) else None
    if not isinstance(summary, dict):
        summary = {"incident_id": incident_id, "outcome": "failed", "folder": str(folder_root / incident_id),
                   "failed_steps": [], "error": str(summary)}
    return summary


def report_summary(summary: dict[str, Any]) -> None:
    folder = Path(summary.get("folder", ""))
    outcome = summary.get("outcome")
    if outcome == "succeeded":
        console.print("[bold green]contained[/] — all required steps succeeded")
        for step in summary.get("declined_steps") or []:
            console.print(f"[yellow]declined[/] — approval {step!r} was denied (on_deny: skip): it and the "
                          "steps that need it were skipped")
    elif outcome in ("rolled back", "partly rolled back", "nothing undone", "nothing to undo"):
        report_rollback(summary)
    else:
        failed = ", ".join(summary.get("failed_steps") or []) or summary.get("error", "see the timeline")
        console.print(f"[bold red]run {outcome}[/] — {failed}")
    console.print(f"incident folder: {folder}")
    if (folder / "postmortem.md").exists():
        console.print(f"post-mortem:     {folder / 'postmortem.md'}")


def report_rollback(summary: dict[str, Any]) -> None:
    """What a rollback undid and what it did not (and why), newest first."""
    undone, not_undone = summary.get("undone") or [], summary.get("not_undone") or []
    outcome = summary.get("outcome")
    if outcome == "rolled back":
        console.print(f"[bold green]rolled back[/] — undid {len(undone)} step(s): {', '.join(undone) or 'none'}")
    elif outcome == "partly rolled back":
        console.print(f"[bold yellow]partly rolled back[/] — undid {len(undone)} step(s): {', '.join(undone)}")
    elif outcome == "nothing to undo":
        console.print("[bold green]nothing to undo[/] — no step changed anything")
    else:
        console.print("[bold red]nothing undone[/] — no step that changed something declares a compensation")
    for row in not_undone:
        console.print(f"  not undone: {row['step']}: {row['reason']}")


