"""The ``stanch drill`` sub-app (drill-run adds ``run``; drill-ops' commands are registered from
``flows.entrypoints.drill_ops_cli``). Must not touch: the drill runner itself."""

from __future__ import annotations

import typer

from flows.entrypoints.drill_ops_cli import register

drill_app = typer.Typer(help="Tabletop drills: run, schedule, history and trend.", no_args_is_help=True)
register(drill_app)
