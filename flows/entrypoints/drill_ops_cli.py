"""``stanch drill history|report|schedule|schedules|unschedule`` (issue 10, drill-ops).

Owns: the argument parsing and output of these commands; reading lives in
``flows.drills.history``, Prefect schedules in ``flows.drills.schedules``. Registered on the
``drill`` sub-app by ``register(app)``. Must not touch: ``stanch drill run`` (drill-run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from flows.entrypoints.terminal import console, print_diagnostics, print_error

StoreOpt = Annotated[Path | None, typer.Option(
    "--store", help="Incident store folder to read (as `drill run --store DIR`; default: STANCH_STORE or "
                    "<STANCH_HOME>/incidents).")]


def _store(given: Path | None = None) -> Path:
    from integrations.settings import StanchSettings

    return given if given is not None else StanchSettings().store_dir


def _history(scenario: str | None, given: Path | None = None) -> list[Any]:
    """The drills recorded in the store; a store that cannot be read (an unreachable database, a bad
    setting) is one line on stderr and exit 2, never a traceback."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from flows.drills.history import history
    from flows.entrypoints.config_errors import settings_problem
    from integrations.errors import StanchError
    from integrations.settings import StanchSettings

    try:
        return list(history(_store(given), scenario, folder_only=given is not None))
    except (ValidationError, SettingsError) as exc:
        print_error(settings_problem(exc, StanchSettings))
    except StanchError as exc:
        print_error(str(exc))
    raise typer.Exit(2)


def _where(given: Path | None = None) -> str:
    """Where history is read from, for messages: ``--store DIR``, else the PostgreSQL store (no
    password) or the folder."""
    from flows.store import current

    remote = None if given is not None else current()
    return remote.display if remote is not None else str(_store(given))


def history_cmd(scenario: Annotated[str | None, typer.Argument(help="Scenario name (default: all).")] = None,
                store: StoreOpt = None) -> None:
    """Past drills, oldest first: date, score, passed/FAILED, time to contain vs target, failed
    probes, trend."""
    from rich.table import Table
    from rich.text import Text

    from flows.drills.history import fmt_seconds, trend

    rows = _history(scenario, store)
    if not rows:
        console.print(f"no drills recorded{f' for {scenario}' if scenario else ''} in {_where(store)}",
                      markup=False)
        raise typer.Exit(0)
    table = Table(box=None, pad_edge=False)
    for col in ("date (UTC)", "scenario", "score", "result", "contain", "target", "failed probes"):
        table.add_column(col, overflow="fold")
    for r in rows:  # the verdict in words too: colour is lost when piped
        style = "green" if r.passed else "bold red"
        table.add_row(f"{r.started_at:%Y-%m-%d %H:%M}", Text(r.scenario), Text(str(r.score), style),
                      Text("passed" if r.passed else "FAILED", style), fmt_seconds(r.time_to_contain_s),
                      fmt_seconds(r.target_time_to_contain_s), Text(", ".join(r.failed_probes) or "—"))
    console.print(table)
    console.print(f"trend: {trend([r.score for r in rows])}  ({len(rows)} drill{'s' if len(rows) != 1 else ''})")


def report_cmd(scenario: Annotated[str | None, typer.Argument(help="Scenario name (default: all).")] = None,
               out: Annotated[Path, typer.Option("--out", help="Folder for trend.png and history.md.")] = Path(
                   "drill-report"), store: StoreOpt = None) -> None:
    """Write a trend chart (trend.png) and a Markdown table (history.md); with PREFECT_API_URL
    set, also attach them as a Prefect artifact."""
    from flows.drills.history import publish_artifact, write_report

    rows = _history(scenario, store)
    if not rows:
        print_error(f"no drills recorded{f' for {scenario}' if scenario else ''} in {_where(store)}")
        raise typer.Exit(1)
    chart, table, _ = write_report(rows, out, scenario)
    console.print(f"chart: {chart}\ntable: {table}")
    key = publish_artifact(table.read_text(encoding="utf-8"), chart, scenario)
    if key:
        console.print(f"Prefect artifact: {key}")


def _need_api() -> None:
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        print_error("schedules live on a Prefect server: set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)")
        raise typer.Exit(2)


def schedule_cmd(
    scenario: Annotated[str, typer.Argument(help="Scenario name (`runbooks/drills/<name>.yaml`).")],
    cron: Annotated[str | None, typer.Option(help='Cron expression, e.g. "0 10 * * 1" (Mondays 10:00).')] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA time zone of the cron, e.g. Europe/Berlin.")] = None,
    interval: Annotated[float | None, typer.Option(help="Every N seconds instead of a cron (tests).")] = None,
) -> None:
    """Schedule a drill on the Prefect server (one schedule per scenario; replaces an earlier
    one). The scenario must resolve and load first (exit 2 otherwise, nothing is created).
    `stanch worker` executes the firings; each gets a new incident id."""
    from flows.drills.schedules import schedule
    from integrations.errors import RunbookError, StanchError

    _need_api()
    try:
        deployment_id = schedule(scenario, cron=cron, interval=interval, timezone=timezone)
    except RunbookError as exc:  # the scenario does not load: its located diagnostics, nothing created
        print_diagnostics(exc)
        raise typer.Exit(2) from None
    except StanchError as exc:
        print_error(str(exc))
        raise typer.Exit(2) from None
    console.print(f"scheduled drill {scenario} (deployment stanch-drill/{scenario}, {deployment_id}); "
                  "run `stanch worker` to execute it")


def schedules_cmd() -> None:
    """Scheduled drills with their next run."""
    from flows.drills.schedules import list_schedules

    _need_api()
    rows = list_schedules()
    if not rows:
        console.print("no drills scheduled")
        return
    for r in rows:
        nxt = f"{r.next_run:%Y-%m-%d %H:%M:%S %Z}" if r.next_run else "not yet planned"
        console.print(f"{r.scenario:<28} {r.schedule:<32} next: {nxt}{'' if r.active else '  (paused)'}")


def unschedule_cmd(scenario: Annotated[str, typer.Argument(help="Scenario name.")]) -> None:
    """Remove a scenario's schedule (and its planned runs)."""
    from flows.drills.schedules import unschedule

    _need_api()
    if not unschedule(scenario):
        print_error(f"no schedule for drill {scenario!r} (see `stanch drill schedules`)")
        raise typer.Exit(1)
    console.print(f"unscheduled drill {scenario}")


def register(app: typer.Typer) -> None:
    """Add drill-ops' commands to the ``stanch drill`` sub-app."""
    app.command("history")(history_cmd)
    app.command("report")(report_cmd)
    app.command("schedule")(schedule_cmd)
    app.command("schedules")(schedules_cmd)
    app.command("unschedule")(unschedule_cmd)
