"""``stanch drill …``: the typer sub-app for tabletop drills (issue 10).

Owns: the ``drill`` sub-app and ``stanch drill run SCENARIO [--keep] [--store DIR]`` (live
progress of the run, then a scorecard summary table; exit 0 passed, 1 a probe or target failed,
2 bad scenario or configuration, 130 interrupted: one ``drill interrupted: …`` line, no
scorecard). drill-ops registers its commands (schedule, history, …) on the
same ``drill_app`` from ``flows.entrypoints.drill_ops_cli``. Work lives in ``flows.drills``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from flows.drills.history import fmt_seconds
from flows.entrypoints.drill_ops_cli import register
from flows.entrypoints.terminal import console, err, print_diagnostics, print_error
from integrations.errors import RunbookError, StanchError

drill_app = typer.Typer(help="Tabletop drills: run, schedule, history and trend.", no_args_is_help=True)


def _summary(card: dict[str, Any]) -> Table:
    """The scorecard as a table; every text that comes from the drill (details, descriptions) is
    shown literally (``Text``), never as Rich markup. Targets are formatted as in ``drill history``
    (``5m00s``); a run that never contained says ``not contained``."""
    ok, fail = Text("pass", "green"), Text("FAIL", "bold red")
    table = Table(title=f"Drill {card['scenario']}: {'PASSED' if card['passed'] else 'FAILED'} "
                        f"— score {card['score']}/100", title_justify="left")
    for col in ("check", "result", "observed / detail"):
        table.add_column(col)
    for p in card.get("probes", []):
        result = (ok if p["passed"] else fail) if p.get("scored", True) else Text("baseline", "dim")
        table.add_row(Text(f"{p['phase']}: {p['name']}"), result, Text(str(p.get("detail") or "")))
    target = card.get("target_time_to_contain_s")
    ttc = card.get("time_to_contain_s")
    met = target is None or (ttc is not None and ttc <= target)
    measured = f"{ttc:g}s" if ttc is not None else "not contained"
    table.add_row("time to contain", ok if met else fail,
                  f"{measured} (target {fmt_seconds(target)})" if target is not None else measured)
    if card.get("time_to_last_containment_s") is not None:  # not a target: no pass/fail
        table.add_row("time to last containment", "", f"{card['time_to_last_containment_s']:g}s (last containment "
                      "step done; time to contain also waits for later approvals)")
    if card.get("target_time_to_first_decision_s") is not None:
        tfd, tgt = card.get("time_to_first_decision_s"), card["target_time_to_first_decision_s"]
        met = tfd is not None and tfd <= tgt
        table.add_row("time to first decision", ok if met else fail,
                      f"{f'{tfd:g}s' if tfd is not None else 'no decision'} (target {fmt_seconds(tgt)})")
    for a in card.get("approvers", []):
        answered = a.get("response_s") is not None
        table.add_row(Text(f"approver {a['user']}"), a["decision"] if answered else Text("never answered", "yellow"),
                      Text(f"{a['step']}: {a['response_s']}s" if answered else f"{a['step']}: no response"))
    for i in card.get("injects", []):
        outcome = str(i.get("result") or "")
        style = "green" if outcome == "survived" else "dim" if outcome == "did not fire" else "yellow"
        retried = f", {i['retried']} retried" if i.get("retried") else ""
        table.add_row(Text(f"inject: {i['kind']}"), Text(outcome, style),
                      Text(f"{i['description']} (fired {i['fired']}, survived {i['survived']}{retried})"))
    retries = card.get("retries")
    if retries:
        table.add_row("retries", str(retries), f"{card.get('retries_engine', 0)} by the engine, "
                      f"{card.get('retries_aws', 0)} AWS calls after an injected fault")
    return table


@contextmanager
def _interruptible(stopped: list[str]) -> Iterator[None]:
    """While a drill runs: the first SIGINT/SIGTERM is recorded in ``stopped`` and raised as
    ``KeyboardInterrupt`` (the runner then kills the run and the sandbox, writes no scorecard);
    later ones are ignored so that clean-up is not cut short. Once the runner has cleaned up, the
    process exits at once if the Prefect API went away too (``_exit_if_prefect_gone``). Main
    thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, _frame: object) -> None:
        if stopped:
            return
        stopped.append("SIGINT (Ctrl-C)" if signum == signal.SIGINT else signal.Signals(signum).name)
        raise KeyboardInterrupt

    from flows.drills import runner

    before = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    runner.on_interrupted.append(_exit_if_prefect_gone)
    try:
        yield
    finally:
        runner.on_interrupted.remove(_exit_if_prefect_gone)
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _prefect_gone() -> bool:
    """Whether this process's Prefect API went away: its temporary server died with the process
    group on Ctrl-C (it gets the same SIGINT: given half a second to stop listening), or the API
    does not answer ``/health`` within a second."""
    import time

    import httpx
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL

    time.sleep(0.5)
    servers = [s for s in SubprocessASGIServer._instances.values() if s.server_process is not None]
    if any(s.server_process is not None and s.server_process.poll() is not None for s in servers):
        return True
    urls = [s.api_url for s in servers] or ([str(PREFECT_API_URL.value())] if PREFECT_API_URL.value() else [])
    for url in urls:
        try:
            if httpx.get(f"{url.rstrip('/')}/health", timeout=1.0).status_code != 200:
                return True
        except httpx.HTTPError:
            return True
    return False


def _exit_if_prefect_gone(why: str) -> None:
    """Runner hook after an interrupted drill cleaned up: with the Prefect API gone, nothing is
    left to record, and Prefect's engine would retry for minutes and print tracebacks: say so in
    one line and exit 130 now (any temporary Prefect server of ours is stopped first)."""
    if not _prefect_gone():
        return  # the flow run ends normally; run() prints the line
    from prefect.server.api.server import SubprocessASGIServer

    for server in list(SubprocessASGIServer._instances.values()):
        with contextlib.suppress(Exception):  # already gone: nothing to stop
            server.stop()
    err.print(Text(f"drill interrupted: {why}"), soft_wrap=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


def _interrupted(why: str) -> NoReturn:
    """``drill interrupted: <why>`` (one line, literally, on stderr), exit 130 as a shell reports
    Ctrl-C; no scorecard was written."""
    if "scorecard" not in why:
        why += "; no scorecard written"
    err.print(Text(f"drill interrupted: {why}"), soft_wrap=True)
    raise typer.Exit(130)


@drill_app.command("run")
def run(
    scenario: Annotated[str, typer.Argument(help="Scenario name (runbooks/drills) or path to its YAML.")],
    keep: Annotated[bool, typer.Option(help="Keep the drill's sandbox folder (`<store>/.drills/INC-…`).")] = False,
    store: Annotated[Path | None, typer.Option(help="Incident store (default: STANCH_STORE or "
                                                    "<STANCH_HOME>/incidents).")] = None,
) -> None:
    """Run a drill: a fresh sandbox of its own, the scenario's injects, the runbook in drill mode,
    probes before/after, scorecard.md/json in the incident folder (also posted in the incident's
    Slack thread and kept as a Prefect artifact). Exit 1 when a probe or target failed."""
    from flows.drills import contract
    from flows.drills.runner import run_drill_flow

    try:
        path = contract.resolve_scenario(scenario)
        contract.load_scenario(path)  # located diagnostics before anything starts
    except RunbookError as exc:
        print_diagnostics(exc)  # each once, literally (no markup)
        raise typer.Exit(1) from None
    except StanchError as exc:
        print_error(str(exc))
        raise typer.Exit(2) from None
    console.print(f"drill [bold]{escape(scenario)}[/] ({escape(str(path))}) — own sandbox, DRILL mode")
    stopped: list[str] = []
    try:
        with _interruptible(stopped):
            result = run_drill_flow(scenario=str(path), store=str(store) if store else "", keep=keep, echo=True)
    except StanchError as exc:
        if stopped:
            _interrupted(stopped[0])
        print_error(str(exc))
        raise typer.Exit(2) from None
    except BaseException:  # once interrupted, whatever unwinds (e.g. Prefect's API gone too) is that
        if not stopped:
            raise
        _interrupted(stopped[0])
    if result.get("interrupted"):
        _interrupted(str(result["interrupted"]))
    console.print()
    console.print(_summary(result["scorecard"]))
    console.print(f"scorecard: {Path(result['folder']) / 'scorecard.md'}")
    raise typer.Exit(int(result["exit_code"]))


register(drill_app)  # schedule, schedules, unschedule, history, report (flows.entrypoints.drill_ops_cli)
