"""``stanch drill history|report|schedule|schedules|unschedule`` (issue 10, drill-ops).

Owns: the argument parsing and output of these commands; reading lives in
``flows.drills.history``, Prefect schedules in ``flows.drills.schedules``. Registered on the
``drill`` sub-app by ``register(app)``. Must not touch: ``stanch drill run`` (drill-run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.entrypoints.terminal import console, err


def _store() -> Path:
    from integrations.settings import StanchSettings

    return StanchSettings().store_dir


def history_cmd(scenario: Annotated[str | None, typer.Argument(help="Scenario name (default: all).")] = None,
                ) -> None:
    """Past drills, oldest first: date, score, time to contain vs target, failed probes, trend."""
    from rich.table import Table

    from flows.drills.history import fmt_seconds, history, trend

    rows = history(_store(), scenario)
    if not rows:
        console.print(f"no drills recorded{f' for {scenario}' if scenario else ''} in {_store()}")
        raise typer.Exit(0)
    table = Table(box=None, pad_edge=False)
    for col in ("date (UTC)", "scenario", "score", "contain", "target", "failed probes"):
        table.add_column(col, overflow="fold")
    for r in rows:
        score = f"[green]{r.score}[/]" if r.passed else f"[red]{r.score}[/]"
        table.add_row(f"{r.started_at:%Y-%m-%d %H:%M}", r.scenario, score, fmt_seconds(r.time_to_contain_s),
                      fmt_seconds(r.target_time_to_contain_s), ", ".join(r.failed_probes) or "—")
    console.print(table)
    console.print(f"trend: {trend([r.score for r in rows])}  ({len(rows)} drill{'s' if len(rows) != 1 else ''})")


def report_cmd(scenario: Annotated[str | None, typer.Argument(help="Scenario name (default: all).")] = None,
               out: Annotated[Path, typer.Option("--out", help="Folder for trend.png and history.md.")] = Path(
                   "drill-report")) -> None:
    """Write a trend chart (trend.png) and a Markdown table (history.md); with PREFECT_API_URL
    set, also attach them as a Prefect artifact."""
    from flows.drills.history import history, publish_artifact, write_report

    rows = history(_store(), scenario)
    if not rows:
        err.print(f"error: no drills recorded{f' for {scenario}' if scenario else ''} in {_store()}")
        raise typer.Exit(1)
    chart, table, _ = write_report(rows, out, scenario)
    console.print(f"chart: {chart}\ntable: {table}")
    key = publish_artifact(table.read_text(encoding="utf-8"), chart, scenario)
    if key:
        console.print(f"Prefect artifact: {key}")


def register(app: typer.Typer) -> None:
    """Add drill-ops' commands to the ``stanch drill`` sub-app."""
    app.command("history")(history_cmd)
    app.command("report")(report_cmd)
