"""The ``stanch`` command line.

Owns: argument parsing, exit codes (0 ok, 1 the run/validation failed, 2 bad input or
configuration), human output (rich), and wiring the sandbox into settings for ``--sandbox`` /
``--drill`` / ``demo``. Work itself lives in flows.engine.spec / compiler / runtime and integrations.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from integrations.errors import InputError, RunbookError, StanchError

app = typer.Typer(
    name="stanch",
    help=(
        "Incident-response runbooks as code: validate, plan and run declarative YAML runbooks as "
        "Prefect flows, with a status report per step, a hash-chained timeline and a post-mortem.\n\n"
        "Typical use, against the local sandbox (`stanch sandbox up`):\n\n"
        "* `stanch validate` — check every runbook\n"
        "* `stanch plan compromised-dependency --sandbox -i advisory=MAL-2026-2307` — what would happen\n"
        "* `stanch run compromised-dependency --drill -i advisory=MAL-2026-2307` — do it, watch it\n"
        "* `stanch timeline verify INC-…` and `postmortem.md` in the incident folder — the record\n\n"
        "Exit codes: 0 ok, 1 the run failed or a runbook is invalid, 2 bad input or configuration."
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
timeline_app = typer.Typer(help="Inspect and verify an incident's hash-chained timeline.", no_args_is_help=True)
sandbox_app = typer.Typer(help="Local sandbox: moto server (3 AWS accounts) + Slack stand-in + inventory.",
                          no_args_is_help=True)
slack_app_cli = typer.Typer(help="The Slack app: /stanch slash command and approval buttons.", no_args_is_help=True)
app.add_typer(timeline_app, name="timeline")
app.add_typer(slack_app_cli, name="slack")
app.add_typer(sandbox_app, name="sandbox")
cluster_app = typer.Typer(help="A local cluster: Prefect server on PostgreSQL, workers, Slack app, sandbox.",
                          no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")
store_app = typer.Typer(help="The incident store in PostgreSQL (STANCH_STORE=postgresql://…).", no_args_is_help=True)
app.add_typer(store_app, name="store")
from flows.entrypoints.drill_cli import drill_app  # noqa: E402

app.add_typer(drill_app, name="drill")

from flows.engine.runbooks import REPO_RUNBOOKS, resolve_runbook  # noqa: E402
from flows.entrypoints.terminal import (  # noqa: E402
    console,
    err,
    execute_run,
    print_diagnostics,
    report_summary,
    run_with_progress,
)

InputOpt = Annotated[list[str] | None, typer.Option("--input", "-i", help="Runbook input as key=value (repeat).")]


def _settings() -> Any:
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from flows.entrypoints.config_errors import settings_problem
    from integrations.settings import StanchSettings

    try:
        return StanchSettings()
    except (ValidationError, SettingsError) as exc:  # a bad STANCH_* variable: one line naming it, exit 2
        raise _fail(settings_problem(exc, StanchSettings)) from None


def cli_actor(initiator: str = "") -> str:
    """Who a CLI command acts as: ``cli:<name>`` — ``--initiator`` (a ``cli:`` the user typed is not
    doubled), else the OS user; plain ``cli`` when nobody can be named (was ``cli:cli``)."""
    who = initiator.strip().removeprefix("cli:").strip()
    if not who:
        import getpass

        try:
            who = getpass.getuser()
        except (KeyError, OSError, ImportError):  # no USER/LOGNAME and no passwd entry for the uid
            who = ""
    return f"cli:{who}" if who and who != "cli" else "cli"


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def _print_diagnostics(diags: list[Any]) -> None:
    for d in diags:
        err.print(d.format(), markup=False, soft_wrap=True)


@app.command()
def validate(paths: Annotated[list[Path] | None, typer.Argument(help="Runbook files or folders "
                                                                  "(default: ./runbooks).")] = None) -> None:
    """Check runbooks and drill scenarios (recognised by their content: `runbook:`, `probes:`, …
    and no `steps:`) and report every error at once as file:line:col: error[CODE]: message."""
    from flows.engine.spec import validate_file
    from integrations.base import default_registry

    targets: list[Path] = []
    for p in paths or [Path("runbooks") if Path("runbooks").exists() else REPO_RUNBOOKS]:
        if p.is_dir():
            targets += sorted(q for q in p.glob("*.y*ml"))
        elif p.exists():
            targets.append(p)
        else:
            raise _fail(f"no such file or folder: {p}")
    if not targets:
        raise _fail("no runbooks found")
    registry = default_registry()
    total = 0
    from rich.text import Text

    from flows.drills.scenario import is_scenario_file, validate_scenario_file

    for t in targets:  # a drill scenario (by its content, or in a folder named drills) is checked as one
        diags = validate_scenario_file(t) if is_scenario_file(t) else validate_file(t, registry)
        errors = [d for d in diags if d.severity == "error"]
        total += len(errors)
        _print_diagnostics(diags)
        if not errors:
            console.print(Text.assemble(("ok", "green"), f"  {t}"), soft_wrap=True)  # a path: never split
    if total:
        err.print(f"{total} error{'s' if total != 1 else ''} in {len(targets)} file(s)")
        raise typer.Exit(1)


def _load_plan(runbook: str) -> tuple[Any, Any]:
    from flows.engine.compiler import compile_plan
    from flows.engine.spec import load_runbook
    from integrations.base import default_registry

    path = resolve_runbook(runbook)
    registry = default_registry()
    loaded = load_runbook(path, registry)
    return compile_plan(loaded.runbook, loaded.path, registry), registry


@app.command()
def plan(
    runbook: Annotated[str, typer.Argument(help="Runbook name (in ./runbooks) or path.")],
    input: InputOpt = None,
    sandbox: Annotated[bool, typer.Option(help="Resolve against the running sandbox (`stanch sandbox up`).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show the ordered steps with their action, resolved parameters and fan-out. No side effects:
    read-only steps (e.g. scoping) are evaluated to resolve fan-out; mutating steps are only described."""
    from flows.engine.compiler import parse_input_pairs, resolve_inputs
    from flows.engine.planner import dry_run

    try:
        if sandbox:
            _use_sandbox()
        plan_, registry = _load_plan(runbook)
        values = resolve_inputs(plan_, parse_input_pairs(input or []))
        rows = dry_run(plan_, values, registry, _settings())
        from flows.engine.redaction import Redactor

        rows = Redactor({str(values[k]) for k, s in plan_.inputs.items() if s.secret and values.get(k)})(rows)
    except RunbookError as exc:
        print_diagnostics(exc)
        raise typer.Exit(1) from None
    except StanchError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    from flows.engine.planner import render_plan

    console.print(render_plan(plan_, rows), markup=False, emoji=False, soft_wrap=True)


def read_sandbox_state() -> Any:
    from integrations.sandbox import read_state

    return read_state(_settings().home)


def _use_sandbox() -> Any:
    from integrations.sandbox import load_state

    settings = _settings()
    state = load_state(settings.home)
    os.environ.update(state.environment())
    return state


def _runbook_inputs_help(runbook: str) -> None:
    """The runbook's inputs (name, type, required/default, choices, description) on stdout."""
    from flows.engine.catalogue import inputs_table

    try:
        plan_, _ = _load_plan(runbook)
    except RunbookError as exc:
        print_diagnostics(exc)
        raise typer.Exit(1) from None
    except StanchError as exc:
        raise _fail(str(exc)) from None
    console.print(inputs_table(plan_))


@app.command()
def inputs(runbook: Annotated[str, typer.Argument(help="Runbook name (in ./runbooks) or path.")]) -> None:
    """List a runbook's inputs: type, required or default, choices, description (as `stanch run
    RUNBOOK --help` does)."""
    _runbook_inputs_help(runbook)


@app.command(context_settings={"help_option_names": []})
def run(
    ctx: typer.Context,
    runbook: Annotated[str | None, typer.Argument(help="Runbook name (in ./runbooks) or path.",
                                                  show_default=False)] = None,
    input: InputOpt = None,
    drill: Annotated[bool, typer.Option(help="Tabletop drill: sandbox only, refuses any other endpoint; "
                                             "every report says DRILL.")] = False,
    sandbox: Annotated[bool, typer.Option(help="Target the running sandbox (`stanch sandbox up`).")] = False,
    incident_id: Annotated[str | None, typer.Option(help="Use this incident id (default: new).")] = None,
    initiator: Annotated[str, typer.Option(help="Who started the run (recorded in the timeline).")] = "",
    help_: Annotated[bool, typer.Option("--help", "-h", help="Show this message and exit; after a RUNBOOK, "
                                        "also list its inputs (types, defaults, descriptions).")] = False,
) -> None:
    """Run a runbook: creates an incident, runs the flow with live per-step progress, prints the
    incident folder. Exit code 1 when a required step failed.

    `stanch run RUNBOOK --help` lists the runbook's inputs.
    Uses the Prefect server at PREFECT_API_URL when set, otherwise a temporary local one."""
    from flows.engine.compiler import parse_input_pairs, resolve_inputs
    from flows.engine.incident import new_incident_id

    if help_ or runbook is None:  # --help is parsed here, not eagerly, so that it sees the runbook
        typer.echo(ctx.get_help())
        if runbook is not None:
            _runbook_inputs_help(runbook)
        if runbook is None and not help_:
            raise _fail("missing argument RUNBOOK")
        raise typer.Exit(0)

    try:
        if sandbox or (drill and read_sandbox_state() is not None):
            _use_sandbox()
        settings = _settings()
        if drill:
            from flows.engine.safety import check_drill_targets

            check_drill_targets(settings)
        plan_, _ = _load_plan(runbook)
        given = parse_input_pairs(input or [])
        resolve_inputs(plan_, given)  # fail fast, before any Prefect machinery starts
    except RunbookError as exc:
        print_diagnostics(exc)
        raise typer.Exit(1) from None
    except StanchError as exc:
        raise _fail(str(exc)) from None
    inc = incident_id or new_incident_id()
    from flows.engine import secret_inputs

    public, secrets = secret_inputs.split(plan_, given)
    result = execute_run(plan_.source, public, inc, settings.store_dir, drill=drill, initiator=cli_actor(initiator),
                         secrets=secrets)
    raise typer.Exit(0 if result["outcome"] == "succeeded" else 1)


def _reattach(meta: dict[str, Any]) -> Any:
    """Point this process at exactly what the incident's run targeted (``target`` in
    incident.json); ConfigurationError when that is unavailable. Incidents recorded before targets
    were keep the old rule (a drill re-attaches to the running sandbox)."""
    from flows.engine.targets import reattach

    if "target" not in meta:
        if meta.get("drill") and read_sandbox_state() is not None:
            _use_sandbox()
        return None
    state = read_sandbox_state()
    target, env = reattach(meta, state.environment() if state else None, state.moto_url if state else None)
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if target.drill:
        from flows.engine.safety import check_drill_targets

        check_drill_targets(_settings())
    err.print(f"targeting what the run targeted: {target.describe()}", markup=False, soft_wrap=True)
    return target


@app.command()
def resume(
    incident: Annotated[str, typer.Argument(help="Incident id or folder of a crashed, aborted or failed run.")],
    input: InputOpt = None,
) -> None:
    """Continue an incident's run: steps and fan-out items that already succeeded are skipped
    (never repeated); failed and unfinished ones run. Secret inputs are not kept in the incident:
    give them again with -i (or STANCH_SECRET_<NAME>); resume refuses, naming them, otherwise.
    Targets exactly what the run targeted (its sandbox, endpoints, region). A finished incident
    is not re-run: exit 0 "nothing to resume" if it succeeded, exit 2 if it failed, was aborted
    or rolled back (its compensations ran)."""
    from flows.engine import secret_inputs
    from flows.engine.incident import Incident
    from flows.engine.resume import prior_progress, resume_refusal
    from flows.engine.runtime import run_runbook

    try:
        settings = _settings()
        inc = Incident.open_existing(settings.store_dir, incident)
        meta = inc.read_meta()
        refusal = resume_refusal(prior_progress(inc.events()))
        if refusal is not None:
            code, why = refusal
            if code == 0:
                console.print(f"{inc.id}: {why}", markup=False, soft_wrap=True)
                raise typer.Exit(0)
            raise _fail(f"not resuming {inc.id}: {why}", code)
        _reattach(meta)
        from flows.engine.compiler import parse_input_pairs

        plan_, _ = _load_plan(meta["runbook_path"])
        given, secrets = secret_inputs.resume_inputs(plan_, meta.get("inputs", {}), parse_input_pairs(input or []))
    except StanchError as exc:
        raise _fail(str(exc)) from None
    secret_inputs.deposit(inc.id, secrets)
    try:
        summary = run_with_progress(run_runbook, f"resuming {inc.id} ({meta['runbook']})", inc.folder.parent,
                                     runbook_path=meta["runbook_path"], inputs=given, incident_id=inc.id,
                                     store=str(inc.folder.parent), drill=bool(meta.get("drill")),
                                     initiator=meta.get("initiator", "cli"), resume=True)
    finally:
        secret_inputs.discard(inc.id)
    report_summary(summary)
    raise typer.Exit(0 if summary.get("outcome") == "succeeded" else 1)


@app.command()
def rollback(incident: Annotated[str, typer.Argument(help="Incident id or folder.")],
             input: Annotated[list[str] | None, typer.Option(
                 "--input", "-i", help="A secret input an undo needs, as key=value (repeat).")] = None) -> None:
    """Undo an incident: run the compensations of its succeeded steps, newest first, each once
    (retried on transient errors). Every compensation is recorded in the timeline and post-mortem.
    Prints what was undone and what was not (steps with no compensation declared). Exit 0 when
    every compensation succeeded (also when some steps declare none: "partly rolled back", and
    when no step changed anything: "nothing to undo"), 1 when one failed or when steps changed
    things and none could be undone ("nothing undone"). Targets exactly what the run targeted."""
    from flows.engine import secret_inputs
    from flows.engine.compiler import parse_input_pairs
    from flows.engine.incident import Incident
    from flows.engine.resume import prior_progress
    from flows.engine.runtime import rollback_incident

    try:
        inc = Incident.open_existing(_settings().store_dir, incident)
        _reattach(inc.read_meta())
        given = parse_input_pairs(input or [])
        problems = secret_inputs.rollback_problems(prior_progress(inc.events()).compensation_records, given)
        if problems:
            raise InputError(f"cannot roll back {inc.id}: " + "; ".join(problems))
    except StanchError as exc:
        raise _fail(str(exc)) from None
    secret_inputs.deposit(inc.id, {k: str(v) for k, v in given.items()})
    try:
        summary = run_with_progress(rollback_incident, f"rolling back {inc.id}", inc.folder.parent,
                                     incident_id=inc.id, store=str(inc.folder.parent), initiator=cli_actor())
    finally:
        secret_inputs.discard(inc.id)
    report_summary(summary)
    raise typer.Exit(0 if summary.get("outcome") in ("rolled back", "partly rolled back", "nothing to undo") else 1)


def _decide(incident: str, step: str, approver: str, approve: bool, comment: str, key: Path | None,
            wait: float) -> None:
    """Sign the decision with the approver's Ed25519 key, hand it to the paused run, and report
    what the run made of it: exit 0 only when the run counted it (flows.engine.approval_keys).
    Arguments are checked first, and nothing on the way imports Prefect (plain HTTP to the run's
    server, flows.engine.decisions): a decision takes about a second, a mistake less."""
    if not approver:
        raise _fail("say who decides: --as <Slack user id>; the decision is signed with that approver's key (--key)")
    if key is None:
        raise _fail("no approver key: pass --key or set STANCH_APPROVER_KEY (an Ed25519 private key whose public "
                    "half is listed for your Slack id in the run's STANCH_APPROVER_KEYS_FILE; see docs/slack.md)")
    import getpass
    import time
    import uuid

    from flows.engine.approval_keys import SignedFields, load_private_key, sign
    from flows.engine.decisions import store_dir, submit_decision, wait_outcome

    try:
        try:
            private = load_private_key(key)
        except StanchError as exc:
            if "encrypted" not in str(exc) or not sys.stdin.isatty():
                raise
            private = load_private_key(key, getpass.getpass(f"passphrase for {key}: ").encode())
        fields = SignedFields(incident=incident, step=step, approve=approve, approver=approver, comment=comment,
                              signed_at=round(time.time(), 3), nonce=uuid.uuid4().hex)
        store = store_dir()
        nonce = submit_decision(store, incident, step, f"cli:{approver}", approve, comment, nonce=fields.nonce,
                                signed_at=fields.signed_at, signature=sign(private, fields))
        outcome = wait_outcome(store, incident, nonce, timeout=wait)
    except StanchError as exc:
        raise _fail(str(exc)) from None
    verb = "approval" if approve else "denial"
    if outcome is None:
        raise _fail(f"{verb} of {step!r} by {approver} was sent to {incident}, but the run did not confirm it "
                    f"within {wait:.0f}s (see `stanch timeline show {incident}`)", 1)
    data = outcome.get("data") or {}
    if outcome["kind"] == "approval.refused":
        raise _fail(f"the run refused your {verb} of {step!r}: {data.get('reason', '?')}", 1)
    if outcome["kind"] == "approval.approved":
        console.print(f"approval of {step!r} by {approver} counted by {incident} "
                      f"({data.get('count', '?')} of {data.get('needed', '?')})", markup=False, soft_wrap=True)
    else:
        console.print(f"denial of {step!r} by {approver} recorded by {incident}: the step fails", markup=False,
                      soft_wrap=True)


AsOpt = Annotated[str, typer.Option("--as", help="Your Slack user id (e.g. U0LEAD1); the run checks the "
                                              "signature against that id's public key.")]
KeyOpt = Annotated[Path | None, typer.Option("--key", envvar="STANCH_APPROVER_KEY",
                                             help="Your Ed25519 private key (ssh-keygen -t ed25519).")]
WaitOpt = Annotated[float, typer.Option(help="Seconds to wait for the run to confirm the decision.")]
CommentOpt = Annotated[str, typer.Option(help="Why (recorded in the timeline).")]


@app.command()
def approve(incident: Annotated[str, typer.Argument(help="Incident id.")],
            step: Annotated[str, typer.Argument(help="The approval step waiting.")],
            as_: AsOpt = "", comment: CommentOpt = "", key: KeyOpt = None, wait: WaitOpt = 30.0) -> None:
    """Approve a gated step from the CLI (for when Slack is down), signed with your approver key.
    Exit 0 when the run counted it, 1 when it refused it, 2 for bad input or when no paused run
    takes it. Finds the run on the Prefect server it recorded (PREFECT_API_URL, when set, wins)."""
    _decide(incident, step, as_, True, comment, key, wait)


@app.command()
def deny(incident: Annotated[str, typer.Argument(help="Incident id.")],
         step: Annotated[str, typer.Argument(help="The approval step waiting.")],
         as_: AsOpt = "", comment: CommentOpt = "", key: KeyOpt = None, wait: WaitOpt = 30.0) -> None:
    """Deny a gated step from the CLI (signed): the step fails and the run's compensations run.
    Exit codes and the Prefect server as for `stanch approve`."""
    _decide(incident, step, as_, False, comment, key, wait)


@app.command()
def actions(markdown: Annotated[bool, typer.Option(help="Print docs/actions.md.")] = False) -> None:
    """List the registered actions a runbook may use (the closed registry)."""
    from flows.engine.catalogue import actions_markdown
    from flows.entrypoints.tables import actions_view
    from integrations.base import default_registry

    reg = default_registry()
    if markdown:
        sys.stdout.write(actions_markdown(reg))
    else:
        console.print(actions_view(reg), soft_wrap=True)


@app.command()
def scope(
    advisory: Annotated[str, typer.Argument(help="OSV id (e.g. MAL-2026-2307) or path to an OSV JSON file.")],
    inventory: Annotated[Path | None, typer.Option(
        help="Inventory file (services → lockfiles/SBOMs/workflows; default: STANCH_INVENTORY, "
             "else the running sandbox's, like `run`).")] = None,
    live_from: Annotated[str | None, typer.Option(
        help="When the bad release went live (ISO 8601, UTC; default: a release time in the advisory, "
             "else 7 days before its earliest timestamp).")] = None,
    live_until: Annotated[str | None, typer.Option(help="When it was pulled (default: advisory published).")] = None,
    output: Annotated[Path | None, typer.Option("--json", help="Also write the result as JSON here.")] = None,
) -> None:
    """Which services pulled the bad version, by which path, and were they exposed?

    A file that cannot be read is reported against its service (the others are still scoped);
    exit 2 only for run-level input: the advisory, the inventory, the window, the --json path."""
    from datetime import datetime

    from integrations.inventory import render_scope_table, scope_notes
    from integrations.inventory import scope as run_scope

    if inventory is None:
        from integrations.sandbox.state import read_state

        settings = _settings()
        state = read_state(settings.home)
        inventory = settings.inventory or (state.inventory_path if state is not None else None)
        if inventory is None:
            raise _fail("no inventory: pass --inventory FILE, set STANCH_INVENTORY, or start `stanch sandbox up`")

    def ts(v: str | None) -> datetime | None:
        if v is None:
            return None
        try:
            return datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            raise _fail(f"not an ISO 8601 time: {v!r}") from None

    if output is not None and not output.parent.is_dir():
        raise _fail(f"--json {output}: folder {output.parent} does not exist")
    if output is not None and output.is_dir():
        raise _fail(f"--json {output}: is a directory, give a file path")
    try:
        from integrations.inventory.osv import resolve_advisory
        from integrations.inventory.osv_api import advisory_dirs
        from integrations.inventory.registry import check_safe_versions

        settings = _settings()
        dirs = advisory_dirs([advisory], [settings.advisories_dir], settings)
        result = run_scope(advisory, inventory, live_from=ts(live_from), live_until=ts(live_until),
                           advisories_dir=dirs)
        result = check_safe_versions(result, resolve_advisory(advisory, dirs), settings)
    except StanchError as exc:
        raise _fail(str(exc)) from None
    console.print(render_scope_table(result))
    for note in scope_notes(result):
        console.print(note, style="red" if note.startswith("error") else "yellow", markup=False, highlight=False)
    if output:
        try:
            output.write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise _fail(f"--json {output}: cannot write: {exc.strerror or exc}") from None
        console.print(f"wrote {output}", markup=False, soft_wrap=True)


@timeline_app.command("verify")
def timeline_verify(
    incident: Annotated[str, typer.Argument(help="Incident id or folder.")],
    chain_only: Annotated[bool, typer.Option("--chain-only", help="Check only the hash chain and its head, not "
                                             "the signatures (records written before signing was the default); "
                                             "a whole rewrite with recomputed hashes passes this.")] = False,
) -> None:
    """Check the hash chain, the head and the signed checkpoints: exit 1 if any line was edited,
    dropped, inserted or reordered, the head is missing or garbage, the record is unsigned or was
    rewritten, or it was signed by a key not trusted here (STANCH_TIMELINE_PUBKEYS; this
    installation's own key is always trusted). With the PostgreSQL store, an incident id is
    checked as the database holds it (lines, stored head and signed head); an id it does not hold
    is exit 2 (never the local working copy), a path with a '/' is checked as that folder."""
    import tempfile

    from flows.engine.checkpoints import chain_only as check_chain
    from flows.engine.checkpoints import trusted_keys, verify_record
    from flows.engine.incident import Incident
    from flows.store import current, export_record

    try:
        settings = _settings()
        keys = {} if chain_only else trusted_keys(settings)
        remote = current()
        if remote is not None and "/" not in incident and remote.exists(incident):
            # verify what the database holds, not a working copy: its export, stored heads included
            with tempfile.TemporaryDirectory(prefix="stanch-verify-") as tmp:
                path = Path(tmp) / incident / "timeline.jsonl"
                export_record(remote, incident, path.parent)
                result = check_chain(path) if chain_only else verify_record(path, keys, incident)
            where = f" (from {remote.display})"
        else:
            inc = Incident.open_existing(settings.store_dir, incident)
            path, where = inc.timeline.path, ""
            # the folder's name is the incident id the record is kept (and exported) under
            result = check_chain(path) if chain_only else verify_record(path, keys, inc.folder.name)
    except StanchError as exc:
        raise _fail(str(exc)) from None
    if result.ok and result.chain_only:
        err.print(f"[bold yellow]{result}[/]{where}", soft_wrap=True)
    elif result.ok:
        console.print(f"[green]{result}[/]{where}", soft_wrap=True)
    else:
        err.print(f"[bold red]{result}[/]{where}", soft_wrap=True)
        raise typer.Exit(1)


@timeline_app.command("key")
def timeline_key() -> None:
    """Print the public key this installation signs timelines with (STANCH_TIMELINE_KEY, else
    $STANCH_HOME/keys/timeline-ed25519.pem, created if missing): give it to whoever verifies
    records written here, as a line of STANCH_TIMELINE_PUBKEYS."""
    from flows.engine.timeline_keys import public_line, signing_key

    try:
        key = signing_key(_settings())
    except StanchError as exc:
        raise _fail(str(exc)) from None
    print(public_line(key.public_key()))


@timeline_app.command("show")
def timeline_show(incident: Annotated[str, typer.Argument(help="Incident id or folder.")]) -> None:
    """Print the timeline events with their decisive details (failures in red on a terminal)."""
    from flows.engine.incident import Incident
    from flows.entrypoints.tables import timeline_view

    try:
        inc = Incident.open_existing(_settings().store_dir, incident)
    except StanchError as exc:
        raise _fail(str(exc)) from None
    console.print(timeline_view(list(inc.events()), f"timeline of {inc.id} (UTC)"), soft_wrap=True)


@app.command()
def postmortem(incident: Annotated[str, typer.Argument(help="Incident id or folder.")]) -> None:
    """Re-render postmortem.md from the timeline (never edit it in place)."""
    from flows.engine.incident import Incident

    try:
        inc = Incident.open_existing(_settings().store_dir, incident)
        path = inc.render_postmortem(_postmortem_template(inc))
    except StanchError as exc:
        raise _fail(str(exc)) from None
    console.print(f"wrote {path}", markup=False, soft_wrap=True)


@app.command()
def incidents(
    drill: Annotated[bool, typer.Option("--drill", help="Only drills (tabletop and `run --drill`).")] = False,
    live: Annotated[bool, typer.Option("--live", help="Only live incidents.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line instead of a table.")] = False,
) -> None:
    """List the incidents in the store, newest first: id, runbook, started (UTC), outcome, drill
    or live (with the scenario and score for a scored drill). `unfinished` means running, waiting
    for a person, or crashed: `stanch resume INC-…` continues a crashed one."""
    from flows.engine.incident_list import list_incidents
    from flows.entrypoints.tables import incidents_view

    if drill and live:
        raise _fail("--drill and --live exclude each other; give neither to list both")
    from flows.store import current

    try:
        store = _settings().store_dir
        remote = current()  # the database is the record: what it holds (only what the listing needs)
        rows = list_incidents(store, "drill" if drill else "live" if live else None)
    except StanchError as exc:
        raise _fail(str(exc)) from None
    where = remote.display if remote is not None else str(store)
    if as_json:
        for r in rows:
            print(r.model_dump_json())
        return
    if not rows:
        console.print(f"no {'drill ' if drill else 'live ' if live else ''}incidents in {where}", markup=False,
                      soft_wrap=True)
        return
    console.print(incidents_view(rows), soft_wrap=True)


@app.command()
def export(incident: Annotated[str, typer.Argument(help="Incident id.")],
           out: Annotated[Path, typer.Argument(help="Folder to write the incident's folder (named after its id) "
                                               "into.")]) -> None:
    """Write an incident's record in folder form into OUT/INC-…/ (a folder named after the
    incident) — timeline, head, signed checkpoint, plan, meta, reports, post-mortem, scorecard —
    byte-compatible with the folder store, so `stanch timeline verify OUT/INC-…` checks it with no
    database. Works on both stores (STANCH_STORE a folder or postgresql://…). Refuses to write
    into a non-empty folder; a folder that cannot be written (OUT a file, no permission, disk
    full) is one line, exit 2, and nothing is left half-written."""
    import shutil

    from flows.engine.incident import Incident
    from flows.store import current, export_record

    target = out / incident
    try:
        if out.exists() and not out.is_dir():
            raise _fail(f"cannot export into {out}: it is a file, not a folder (nothing was written)")
        if target.exists() and any(target.iterdir()):
            raise _fail(f"{target} exists and is not empty: export into a new folder (nothing was written)")
        settings = _settings()
        remote = current()
        if remote is not None:
            if not remote.exists(incident):
                raise _fail(f"no incident {incident!r} in {remote.display}")
            source = remote.display
            count = _export_whole(target, lambda into: export_record(remote, incident, into))
        else:
            inc = Incident.open_existing(settings.store_dir, incident)
            source = str(inc.folder)

            def copy(into: Path) -> int:
                shutil.copytree(inc.folder, into, ignore=shutil.ignore_patterns("*.tmp", "*.sync"))
                return len(inc.events())
            count = _export_whole(target, copy)
    except StanchError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot export into {target}: {exc.strerror or exc} (nothing was written)") from None
    console.print(f"exported {incident} ({count} events) from {source} to {target}\n"
                  f"check it with: stanch timeline verify {target}", markup=False, soft_wrap=True)


def _export_whole(target: Path, write: Any) -> int:
    """``write(folder)`` into a staging folder beside ``target``, then rename it to ``target``
    (absent or empty): an export is whole or absent. On OSError the staging folder and any parent
    folders this call created are removed before it is raised."""
    import shutil

    created = None  # the outermost parent folder this export creates
    for parent in [target.parent, *target.parent.parents]:
        if parent.exists():
            break
        created = parent
    staging = target.with_name(f".{target.name}.export-{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        count: int = write(staging)
        os.replace(staging, target)
        return count
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise


def _postmortem_template(inc: Any) -> Path | None:
    meta = inc.read_meta()
    try:
        plan_, _ = _load_plan(meta["runbook_path"])
    except (StanchError, KeyError):
        return None
    template: Path | None = plan_.postmortem_template
    return template


@sandbox_app.command("up")
def sandbox_up() -> None:
    """Start the sandbox in the background and print its endpoints (state in $STANCH_HOME)."""
    from integrations.sandbox import up

    try:
        state = up(_settings().home)
    except StanchError as exc:
        raise _fail(str(exc)) from None
    console.print(f"sandbox up: AWS {state.moto_url} · Slack {state.slack_url} · inventory {state.inventory}",
                  markup=False, soft_wrap=True)


@sandbox_app.command("down")
def sandbox_down() -> None:
    """Stop the background sandbox."""
    from integrations.sandbox import down

    down(_settings().home)
    console.print("sandbox down")


@slack_app_cli.command("serve")
def slack_serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port; Slack posts to http://HOST:PORT/slack/events.")] = 3000,
    socket_mode: Annotated[bool, typer.Option("--socket-mode", help="Connect out over Socket Mode instead "
                                              "(no public URL; needs STANCH_SLACK_APP_TOKEN).")] = False,
) -> None:
    """Serve the Slack app. Requests must carry a valid Slack signature (STANCH_SLACK_SIGNING_SECRET)."""
    from flows.entrypoints.slack_app import serve, serve_socket_mode

    try:
        if socket_mode:
            serve_socket_mode()
        else:
            serve(host, port)
    except StanchError as exc:
        raise _fail(str(exc)) from None


@store_app.command("migrate")
def store_migrate() -> None:
    """Create or migrate the PostgreSQL store's schema to this stanch's version (run it once as the
    database owner after an upgrade; the least-privilege role cannot). Refuses a database whose
    schema is newer than this stanch."""
    from flows.store import current
    from flows.store.postgres import SCHEMA_VERSION

    _settings()  # a bad STANCH_STORE (another URL scheme) is one line naming it
    remote = current()
    if remote is None:
        raise _fail("STANCH_STORE is not a postgresql:// URL: the folder store has no schema to migrate")
    try:
        before, after = remote.migrate()
    except StanchError as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:  # psycopg: unreachable, authentication, …
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise _fail(f"{remote.display}: {type(exc).__name__}: {first}") from None
    if before == after:
        console.print(f"{remote.display}: schema already at version {after} (this stanch's is {SCHEMA_VERSION})",
                      soft_wrap=True, markup=False)
    else:
        console.print(f"{remote.display}: schema migrated from version {before} to {after}", soft_wrap=True,
                      markup=False)


@cluster_app.command("up")
def cluster_up(
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    postgres: Annotated[str, typer.Option(envvar="STANCH_CLUSTER_POSTGRES", help="PostgreSQL server URL "
                                          "(no database).")] = "postgresql://postgres@127.0.0.1:5432",
    prefect_database: Annotated[str, typer.Option(help="Database of the Prefect server (created if "
                                                  "missing).")] = "stanch_prefect",
    leases_database: Annotated[str, typer.Option(help="Database of the run leases and, unless STANCH_STORE is "
                                                 "set, of the incident store (created if missing).")] = "stanch",
    prefect_port: Annotated[int, typer.Option(help="Prefect API/UI port.")] = 4200,
    slack: Annotated[bool, typer.Option(help="Start the Slack app (HTTP, deployment launcher).")] = True,
    slack_port: Annotated[int, typer.Option(help="Slack app port (POST /slack/events).")] = 3000,
    sandbox: Annotated[bool, typer.Option(help="Start the sandbox and point every process at it.")] = True,
) -> None:
    """Start a Prefect server on PostgreSQL, workers with run leases, the Slack app and the
    sandbox on loopback (state and logs in $STANCH_HOME/cluster). The store is $STANCH_STORE, else the
    leases database. Prints the environment a client needs, passwords left out (give them with
    PGPASSWORD or ~/.pgpass)."""
    from flows.entrypoints.cluster import ClusterConfig, shown, up

    try:
        state = up(ClusterConfig(home=_settings().home, workers=workers, postgres=postgres,
                                 prefect_database=prefect_database, stanch_database=leases_database,
                                 prefect_port=prefect_port, slack=slack, slack_port=slack_port, sandbox=sandbox))
    except StanchError as exc:
        raise _fail(str(exc)) from None
    console.print(f"cluster up: Prefect UI {state.prefect_ui_url} · {workers} worker(s) · store {shown(state.store)}"
                  + (f" · Slack app {state.slack_url}" if state.slack_url else "") + f" · logs {state.logs}",
                  markup=False, soft_wrap=True)
    console.print("clients: " + " ".join(f"{k}={shown(v)}" for k, v in state.environment().items()),
                  soft_wrap=True, markup=False)


@cluster_app.command("down")
def cluster_down() -> None:
    """Stop the local cluster (workers get their grace to finish, then hand over their runs) and
    the sandbox it started. Without a cluster, nothing is stopped."""
    from flows.entrypoints.cluster import down

    console.print("cluster down" if down(_settings().home) else "no cluster is running")


@cluster_app.command("status")
def cluster_status() -> None:
    """The local cluster's processes, URLs (no passwords) and health (JSON)."""
    from flows.entrypoints.cluster import status

    console.print_json(json.dumps(status(_settings().home), default=str))


@app.command()
def worker(
    max_concurrent: Annotated[int, typer.Option(help="Runs executed at once (threads).")] = 4,
    poll: Annotated[float, typer.Option(help="Seconds between polls for scheduled runs.")] = 0.3,
    grace: Annotated[float, typer.Option(help="On SIGTERM, seconds to let running runs finish.")] = 60.0,
    no_warm_up: Annotated[bool, typer.Option("--no-warm-up", help="Skip pre-importing the engine.")] = False,
    leases: Annotated[str, typer.Option(envvar="STANCH_WORKER_LEASES", help="postgresql://… for run leases: a "
                                        "dead worker's incidents are taken over by another worker.")] = "",
    lease_ttl: Annotated[float, typer.Option(envvar="STANCH_WORKER_LEASE_TTL",
                                             help="Seconds without renewal before a take-over.")] = 10.0,
    renew: Annotated[float, typer.Option(envvar="STANCH_WORKER_LEASE_RENEW",
                                         help="Seconds between lease renewals and take-over scans.")] = 2.0,
    worker_name: Annotated[str, typer.Option(help="Name in leases and logs (default host:pid).")] = "",
) -> None:
    """Execute runs of the `stanch-runbook/stanch` deployment (started by the Slack app or
    `run_deployment`) and scheduled drills (`stanch drill schedule`) in this warm process: ~1 s
    from trigger to first action, vs ~4 s for a subprocess per run. Needs PREFECT_API_URL (exit 2
    without it, or when that API does not answer at start-up). Exit 1 if runs were cut off at
    shutdown (marked Crashed: another worker with --leases takes them over, else `stanch resume`)."""
    from flows.entrypoints.worker import main as worker_main

    args = ["--max-concurrent", str(max_concurrent), "--poll", str(poll), "--grace", str(grace),
            "--leases", leases, "--lease-ttl", str(lease_ttl), "--renew", str(renew),
            *(["--worker-name", worker_name] if worker_name else [])]
    raise typer.Exit(worker_main([*args, *(["--no-warm-up"] if no_warm_up else [])]))


@app.command()
def demo(
    keep: Annotated[bool, typer.Option(help="Keep the sandbox running afterwards (Ctrl-C to stop).")] = False,
) -> None:
    """Start a sandbox, run compromised-dependency against it for MAL-2026-2307 (axios), print
    where the post-mortem is."""
    from flows.entrypoints.demo import run_demo

    raise typer.Exit(run_demo(console, keep=keep))


EPHEMERAL_STARTUP_TIMEOUT_S = "90"
"""Start-up budget of the temporary Prefect server (Prefect's default, 20 s, failed about one
resume in 30 on a loaded machine). Override with PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS."""


def prefect_defaults(environ: Any = os.environ) -> None:
    """Quiet, local Prefect defaults for the CLI; values already set in the environment win."""
    environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    environ.setdefault("DO_NOT_TRACK", "1")
    environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
    environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", EPHEMERAL_STARTUP_TIMEOUT_S)
    if "PREFECT_HOME" not in environ:
        prefect_home = (Path(environ.get("STANCH_HOME", ".stanch")) / "prefect").resolve()
        environ["PREFECT_HOME"] = str(prefect_home)
        # Prefect creates its home without parents: on a fresh clone (no .stanch yet) the first
        # `stanch drill run` failed to open Prefect's database and timed out after 90 s. Unwritable:
        # Prefect says so itself when it needs the folder.
        with contextlib.suppress(OSError):
            prefect_home.mkdir(parents=True, exist_ok=True)


def main() -> None:
    prefect_defaults()
    app()


if __name__ == "__main__":
    main()
