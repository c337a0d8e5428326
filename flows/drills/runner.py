"""Running one drill: a fresh sandbox, the runbook in drill mode, injects, probes, a scorecard.

Owns: ``run_drill``, ``DrillResult``, ``run_inputs`` (a scenario's inputs as ``stanch run -i``) and
the Prefect flow ``run_drill_flow``.

How a drill runs (each step is the real thing, nothing is mocked):
1. ``DrillSandbox``: the drill's own moto + Slack stand-in in a child process (loopback only),
   seeded with the scenario's fleet; the drill's own state dir ``<store>/.drills/<incident>``.
   The call counters the scenario's probes read are installed on its moto.
2. Before-probes (steady state) against that sandbox.
3. The runbook runs as ``stanch run RUNBOOK --drill`` in a child process pointed at the sandbox
   (so two drills never share environment or AWS state, and a kill inject can SIGKILL it). The
   runner watches the incident's timeline: it arms injects on their triggers, answers approvals
   as each scenario approver (``submit_decision`` with ``slack:U…``, the path Slack clicks take;
   ``silent`` never answers, so the approval expires), runs continuous probes at the interval.
   After the scenario's own kill (a SIGKILL the injector sent or a kill point that fired, each
   counted once), the run is continued with ``stanch resume INCIDENT`` (same child-process way,
   at most ``MAX_RESUMES`` times); a run stopped by SIGINT/SIGTERM is never resumed (``after_exit``).
   Interrupted (Ctrl-C / SIGTERM in this process, or the run stopped by one): the run is killed,
   the sandbox stopped, ``<store>/.drills/<incident>`` removed (unless ``keep``) and no scorecard
   written; ``DrillResult.exit_code`` is 130 and ``interrupted`` says why.
4. After-probes, ``build_scorecard``; ``scorecard.json``/``scorecard.md`` into the incident
   folder, the scorecard posted in the incident's Slack thread (``slack.header`` event), a Prefect
   markdown artifact (a failure there is one line on stderr, not an error: the scorecard is the
   record). ``exit_code`` 0 when everything passed, 1 otherwise.

The store: a folder, or PostgreSQL (``store_url``; ``run_drill_flow`` passes ``STANCH_STORE``
through when it is ``postgresql://…``): then the run and its resumes write the database (their
working copy is the drill's own, ``<drill>/sandbox/incidents``), the scorecard goes into the
database too, and ``store`` is this process's working copy, brought up to the database at the end.
The drill's own flow run carries the Prefect tags ``runbook:``, ``drill``, ``severity:`` and
``scenario:`` (``flows.engine.run_labels``), like the runbook run it starts.

Must not touch: any endpoint that is not loopback, any sandbox but the drill's own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow

from flows.drills import contract
from flows.drills.injects import Injector, InjectRecord, install
from flows.drills.isolation import REPO, DrillSandbox
from flows.engine.incident import new_incident_id
from flows.engine.run_labels import run_tags
from flows.engine.runtime import label_current_run
from flows.engine.timeline_keys import key_for_children
from flows.store import materialize, open_store
from integrations.errors import InputError, StanchError
from integrations.settings import StanchSettings

_CLI = [sys.executable, "-m", "flows.entrypoints.cli"]


#: exit codes of a run that was stopped from outside (SIGINT/SIGTERM, or exited 128+N on one): an
#: interruption of the drill, never the scenario's own kill (that is a SIGKILL the runner causes)
_INTERRUPTED = {-signal.SIGINT: "SIGINT (Ctrl-C)", -signal.SIGTERM: "SIGTERM",
                128 + signal.SIGINT: "SIGINT (Ctrl-C)", 128 + signal.SIGTERM: "SIGTERM"}
MAX_RESUMES = 3


class DrillInterrupted(Exception):
    """The drill was stopped from outside (Ctrl-C, SIGTERM): no scorecard is written."""


#: called with the reason once an interrupted drill has cleaned up (run killed, sandbox stopped,
#: ``.drills/<incident>`` removed), before ``run_drill`` returns; ``stanch drill run`` uses it to
#: exit at once when the Prefect API went away with the process group (the flow engine would
#: otherwise retry recording the flow run's end for minutes)
on_interrupted: list[Callable[[str], None]] = []


@dataclass
class DrillResult:
    incident_id: str
    folder: Path
    scorecard: Any  # None when the drill was interrupted
    exit_code: int  # 0 passed, 1 failed, 130 interrupted (no scorecard)
    injects: list[InjectRecord] = field(default_factory=list)
    slack: str = ""  # "ts <ts> in <channel>" of the posted scorecard, or why it was not posted
    interrupted: str = ""  # why the drill stopped before its scorecard (then exit_code 130)


def after_exit(code: int, *, scenario_kills: int, resumes: int) -> str:
    """What the runner does when the run process exited with ``code``: ``"resume"`` (the
    scenario's own kill stopped it: ``scenario_kills`` kills since the last exit, i.e. a SIGKILL
    the injector sent or a kill point that fired; at most ``MAX_RESUMES``), ``"interrupted"`` (it
    was stopped from outside: SIGINT/SIGTERM, the drill is being interrupted — never resumed) or
    ``"done"`` (it finished, or died of something the scenario did not do)."""
    if code in _INTERRUPTED:
        return "interrupted"
    return "resume" if scenario_kills > 0 and resumes < MAX_RESUMES else "done"


def _events(folder: Path) -> list[dict[str, Any]]:
    path = folder / "timeline.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            break  # a half-written last line (the run was killed mid-write)
    return out


def _prefect_api_url() -> str:
    """The Prefect API this process uses; without PREFECT_API_URL, the temporary local server
    Prefect starts for this process, so the run (a child) and the approvers share one server."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    value = PREFECT_API_URL.value()
    if value:
        return str(value)
    with get_client(sync_client=True) as client:
        return str(client.api_url)


class _Approvers:
    """Answers each ``approval.requested`` as the scenario says (once per step and approver)."""

    def __init__(self, behaviours: list[Any], store: Path, incident_id: str, api_url: str) -> None:
        self.behaviours = behaviours
        self.store = store
        self.incident_id = incident_id
        self.api_url = api_url  # the Prefect API the run was started against (its PREFECT_API_URL)
        self.patience = 120.0  # seconds a scripted approver keeps trying to reach the paused run
        self.done: set[tuple[str, str]] = set()
        self.threads: list[threading.Thread] = []
        self.errors: list[str] = []

    def tick(self, events: list[dict[str, Any]]) -> None:
        for e in events:
            if e["kind"] != "approval.requested":
                continue
            asked = [str(a) for a in (e.get("data") or {}).get("approvers", [])]
            for b in self.behaviours:
                key = (str(e["step"]), b.user)
                if b.user not in asked and not any(a.startswith("@") for a in asked):
                    continue  # not an approver of this step
                if b.decision == "silent" or key in self.done:
                    continue
                self.done.add(key)
                t = threading.Thread(target=self._decide, args=(b, str(e["step"])), daemon=True,
                                     name=f"{b.user} to {b.decision} {e['step']}")
                t.start()
                self.threads.append(t)

    def _api(self, meta: dict[str, Any]) -> Any:
        """Exactly the server the run was started against — not whatever Prefect settings this
        thread sees (a new thread does not inherit a settings context, e.g. a test harness's; a
        decision sent elsewhere never reaches the paused run, which then waits out its gate)."""
        from flows.engine.approvals import prefect_api
        from flows.engine.decisions import PrefectApi

        configured = prefect_api()
        return configured if configured is not None and configured.url == self.api_url else PrefectApi(self.api_url)

    def _decide(self, b: Any, step: str) -> None:
        from flows.engine.decisions import submit_decision

        time.sleep(contract.seconds(b.after) or 0.0)
        give_up = time.monotonic() + self.patience
        while True:  # like a person clicking again: one slow or failed call (a loaded server) is not the end
            try:
                submit_decision(self.store, self.incident_id, step, f"slack:{b.user}", b.decision == "approve",
                                "drill approver", wait=30.0, nonce=uuid.uuid4().hex, api_of=self._api)
                return
            except InputError:
                return  # the run no longer waits for this step (decided, expired or finished): nothing to do
            except StanchError as exc:  # shown on the scorecard, which then fails (build_scorecard)
                if time.monotonic() >= give_up:
                    self.errors.append(f"scripted approver {b.user} could not {b.decision} {step}: {exc}")
                    return
                time.sleep(1.0)


def _probe_context(sb: DrillSandbox, folder: Path, before: dict[str, Any]) -> Any:
    assert sb.state is not None
    meta: dict[str, Any] = {}
    if (folder / "incident.json").exists():
        meta = json.loads((folder / "incident.json").read_text(encoding="utf-8"))
    header = next((e.get("data") or {} for e in reversed(_events(folder)) if e["kind"] == "slack.header"), {})
    meta = {**meta, "fleet": sb.fleet(), "slack": header}
    return contract.ProbeContext(aws=sb.moto_url, slack_base_url=sb.state.slack_url, slack_token=sb.state.slack_token,
                                 inventory_path=sb.state.inventory_path, incident=meta, before=before)


def _run_probes(uses: list[Any], ctx: Any) -> list[Any]:
    registry = contract.default_probes()
    results = []
    for use in uses:
        r = registry.run(use.probe, dict(use.with_), ctx)
        if getattr(use, "name", None) and hasattr(r, "__dataclass_fields__"):
            import dataclasses

            r = dataclasses.replace(r, name=use.name)
        results.append(r)
    return results


def run_inputs(inputs: dict[str, Any], *, inventory: Path, fleet: dict[str, Any], accepts_inventory: bool) -> list[str]:
    """``-i key=value`` for ``stanch run``, for any runbook: ``{sandbox.inventory}`` and
    ``{fleet.<field>}`` filled in from the drill's sandbox (``inventory``: its inventory file,
    ``fleet``: its fleet JSON), lists and mappings as JSON; and ``inventory`` defaulted to the
    sandbox's inventory when the runbook declares that input."""

    def fill(value: str) -> str:  # {sandbox.inventory}, {fleet.<field>} (e.g. {fleet.leaked_access_key_id})
        value = value.replace("{sandbox.inventory}", str(inventory))
        return re.sub(r"\{fleet\.([a-z_]+)\}", lambda m: str(fleet.get(m.group(1), m.group(0))), value)
    # a list or mapping goes to `stanch run -i` as JSON (str() would give "['a']", which no input parses)
    values = {str(k): fill(v if isinstance(v, str) else json.dumps(v)) for k, v in inputs.items()}
    if accepts_inventory:
        values.setdefault("inventory", str(inventory))
    pairs = []
    for k, v in values.items():
        pairs += ["-i", f"{k}={v}"]
    return pairs


def _runbook_path(scenario: Any, scenario_path: Path) -> Path:
    """The scenario's runbook: a path relative to the scenario file, else a runbook name/path."""
    from flows.engine.runbooks import resolve_runbook

    beside = scenario_path.parent / scenario.runbook
    return (beside if beside.is_file() else resolve_runbook(scenario.runbook)).resolve()


def _runbook_facts(runbook: Path) -> tuple[str, str | None, bool]:
    """(name, severity, declares an ``inventory`` input) of the scenario's runbook."""
    from flows.engine.spec import load_runbook
    from integrations.base import default_registry

    loaded = load_runbook(runbook, default_registry()).runbook
    return loaded.name, loaded.severity, "inventory" in loaded.inputs


def containment_steps(runbook: Path) -> set[str]:
    """The runbook's containment steps: a mutating action that is not a notification
    (``flows.engine.reports.NOTIFY_FAMILIES``, as the post-mortem's exposure counts them); the
    scorecard's time to last containment ends at the last of them."""
    from flows.engine.reports import NOTIFY_FAMILIES
    from flows.engine.spec import load_runbook
    from integrations.base import default_registry

    registry = default_registry()
    out = set()
    for step in load_runbook(runbook, registry).runbook.steps:
        action = str(getattr(step, "action", "") or "")
        spec = registry.get(action) if action and action in registry.names() else None
        if spec is not None and spec.mutating and not action.startswith(NOTIFY_FAMILIES):
            out.add(step.id)
    return out


def _post_to_slack(sb: DrillSandbox, folder: Path, markdown: str, channel: str) -> tuple[bool, str]:
    """Post the scorecard in the incident's thread: (posted, "ts … in …" or the problem)."""
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    from integrations.slack.blocks import fit_blocks, markdown_blocks

    assert sb.state is not None
    header = next((e.get("data") or {} for e in reversed(_events(folder)) if e["kind"] == "slack.header"), None)
    if not sb.state.slack_url or not sb.state.slack_token:
        return False, "the drill sandbox has no Slack"
    where: dict[str, Any] = ({"channel": header["channel"], "thread_ts": header["ts"]} if header
                             else {"channel": channel})  # Slack was down at the start: no thread
    url = sb.state.slack_url if sb.state.slack_url.endswith("/") else sb.state.slack_url + "/"
    client = WebClient(token=sb.state.slack_token, base_url=url)
    try:
        resp = client.chat_postMessage(**where, text="Drill scorecard",
                                       blocks=fit_blocks(markdown_blocks(markdown)))
    except (SlackApiError, OSError) as exc:
        return False, str(exc)
    return True, f"ts {resp.get('ts')} in {resp.get('channel')} (thread {where.get('thread_ts', 'none')})"


def _artifact(incident_id: str, markdown: str) -> str:
    """The Prefect markdown artifact of the scorecard; "" or one line saying why it is missing.
    A failure here (e.g. the Prefect API went away) is not the drill's: scorecard.md is the record."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return ""  # outside a flow run (plain CLI call): scorecard.md is the record
    try:
        create_markdown_artifact(markdown=markdown, key=f"drill-{incident_id.lower()}"[:64].replace("_", "-"),
                                 description=f"Drill scorecard for {incident_id}")
    except Exception as exc:  # any Prefect/HTTP error: one line, the scorecard stands
        note = f"drill {incident_id}: no Prefect artifact ({type(exc).__name__}: {str(exc)[:200]}); " \
               "scorecard.md is the record"
        print(note, file=sys.stderr)
        return note
    return ""


def _counters(scenario: Any) -> list[dict[str, Any]]:
    """The sandbox call counters the scenario's probes read (installed before the run)."""
    uses = [(u.probe, dict(u.with_)) for phase in ("before", "continuous", "after")
            for u in getattr(scenario.probes, phase)]
    return contract.default_probes().counters(uses)


def run_drill(scenario_path: Path, *, store: Path, incident_id: str | None = None, keep: bool = False,
              echo: bool = False, timeout: float = 600.0, tick: float = 0.1,
              store_url: str | None = None) -> DrillResult:
    """Run one drill (module docstring). ``keep`` keeps the drill's sandbox dir; ``echo`` passes
    the run's live progress through to this process's stdout; ``store_url``: the PostgreSQL store
    (``store`` is then the local working copy)."""
    scenario = contract.load_scenario(Path(scenario_path))
    runbook = _runbook_path(scenario, Path(scenario_path))
    runbook_name, severity, accepts_inventory = _runbook_facts(runbook)
    label_current_run(run_tags(runbook_name, severity, drill=True, scenario=scenario.name))
    inc = incident_id or new_incident_id()
    store = store.resolve()
    store.mkdir(parents=True, exist_ok=True)
    home = store / ".drills" / inc
    folder = store / inc
    # where the run's timeline is written: the store itself, or with PostgreSQL the run's working copy
    live = home / "sandbox" / "incidents" / inc if store_url else folder
    started = datetime.now(UTC)
    try:
        with DrillSandbox(home / "sandbox", scenario.fleet.sandbox_variant()) as sb:
            assert sb.state is not None
            install(sb.moto_url, _counters(scenario))  # before anything runs: a counter sees every call
            before_results = _run_probes(scenario.probes.before, _probe_context(sb, live, {}))
            before_obs = {r.name: r.observed for r in before_results}
            env = {**os.environ, **sb.state.environment(), "STANCH_HOME": str(home / "sandbox"),
                   "STANCH_STORE": store_url or str(store), "PYTHONPATH": str(REPO)}
            # the run's home is inside the store: it signs with this installation's key (verifiable here)
            env.update(key_for_children(StanchSettings()))
            env.setdefault("STANCH_SLACK_CHANNEL", "#incident")
            env["STANCH_RUN_TAGS"] = f"scenario:{scenario.name}"  # tags the runbook's own flow run
            if scenario.approval_expires:
                env["STANCH_DRILL_APPROVAL_EXPIRES"] = str(contract.seconds(scenario.approval_expires))
            env["PREFECT_API_URL"] = _prefect_api_url()
            inputs = run_inputs(scenario.inputs, inventory=sb.state.inventory_path, fleet=sb.fleet(),
                                accepts_inventory=accepts_inventory)
            runbook_path = str(runbook)
            cmd = [*_CLI, "run", runbook_path, "--drill", "--incident-id", inc, "--initiator", "drill", *inputs]
            injector = Injector(list(scenario.injects), sb.moto_url, sb.slack_root,
                                inventory=sb.state.inventory_path)
            injector.prepare()
            approvers = _Approvers(list(scenario.approvers), store, inc, env["PREFECT_API_URL"])
            continuous: list[Any] = []
            interval = contract.seconds(getattr(scenario.probes, "interval", None) or "2s") or 2.0
            next_probe = time.monotonic() + interval
            deadline = time.monotonic() + timeout
            resumes = 0
            scenario_kills = 0  # kills the scenario caused since the run process last exited
            out = None if echo else subprocess.DEVNULL
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out, cwd=str(home))
            try:
                while True:
                    events = _events(live)
                    started_steps = {str(e["step"]) for e in events if e["kind"] == "step.started"}
                    run_started = any(e["kind"] == "run.started" for e in events)
                    if injector.tick(started_steps, proc.pid if proc.poll() is None else None, run_started):
                        scenario_kills += 1
                    approvers.tick(events)
                    if scenario.probes.continuous and time.monotonic() >= next_probe:
                        continuous += _run_probes(scenario.probes.continuous, _probe_context(sb, live, before_obs))
                        next_probe = time.monotonic() + interval
                    code = proc.poll()
                    if code is not None:
                        # read on every exit, so a kill point counts once, for the exit it caused
                        scenario_kills += injector.kill_points_fired()
                        action = after_exit(code, scenario_kills=scenario_kills, resumes=resumes)
                        if action == "interrupted":
                            raise DrillInterrupted(f"the run was stopped by {_INTERRUPTED[code]}")
                        scenario_kills = 0
                        if action == "resume":
                            resumes += 1
                            proc = subprocess.Popen([*_CLI, "resume", inc], env=env, stdout=out, stderr=out,
                                                    cwd=str(home))
                            continue
                        break
                    if time.monotonic() > deadline:
                        proc.kill()
                        proc.wait()
                        break
                    time.sleep(tick)
            except BaseException:  # never leave a run of ours behind (Ctrl-C, a probe error, …)
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                raise
            for t in approvers.threads:
                t.join(timeout=35)
            approvers.errors += [f"a scripted approver's decision was still pending after 35 s ({t.name})"
                                 for t in approvers.threads if t.is_alive()]
            if store_url:  # the database is the record: this process's working copy from it
                materialize(open_store(store_url), inc, folder)
            events = _events(folder)
            outcome = next(((e.get("data") or {}).get("outcome") for e in reversed(events)
                            if e["kind"] == "run.finished"), None)
            records = injector.finish(run_succeeded=outcome == "succeeded")
            after_results = _run_probes(scenario.probes.after, _probe_context(sb, folder, before_obs))
            finished = datetime.now(UTC)
            card = contract.build_scorecard(
                scenario, incident_id=inc, timeline=events,
                probe_results={"before": before_results, "after": after_results, "continuous": continuous},
                injects=records, started_at=started, finished_at=finished, harness_problems=approvers.errors,
                containment_steps=containment_steps(runbook))
            markdown = contract.render_markdown(card)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "scorecard.json").write_text(
                json.dumps(card.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
            (folder / "scorecard.md").write_text(markdown, encoding="utf-8")
            posted, slack_note = _post_to_slack(sb, folder, markdown, env["STANCH_SLACK_CHANNEL"])
            if not posted:
                (folder / "scorecard.slack-error.txt").write_text(slack_note + "\n", encoding="utf-8")
            if store_url:  # the PostgreSQL store keeps the scorecard too
                for name in ("scorecard.json", "scorecard.md", "scorecard.slack-error.txt"):
                    if (folder / name).is_file():
                        open_store(store_url).put(inc, name, (folder / name).read_bytes())
            _artifact(inc, markdown)
    except (KeyboardInterrupt, DrillInterrupted) as exc:  # stopped from outside: no scorecard, nothing left
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
        why = str(exc) if isinstance(exc, DrillInterrupted) else "SIGINT (Ctrl-C)"
        for hook in list(on_interrupted):
            hook(f"{why}; the run and the drill's sandbox were stopped, no scorecard written")
        return DrillResult(incident_id=inc, folder=folder, scorecard=None, exit_code=130,
                           interrupted=f"{why}; the run and the drill's sandbox were stopped, no scorecard written")
    if not keep:
        shutil.rmtree(home, ignore_errors=True)
    return DrillResult(incident_id=inc, folder=folder, scorecard=card, exit_code=0 if card.passed else 1,
                       injects=records, slack=slack_note)


def _drill_run_name() -> str:
    """Readable flow-run name: ``drill <scenario>`` (the scenario's file stem when given a path)."""
    from prefect.runtime import flow_run

    scenario = str(flow_run.parameters.get("scenario") or "clean")
    return f"drill {Path(scenario).stem if scenario.endswith(('.yaml', '.yml')) else scenario}"


@flow(name="stanch-drill", flow_run_name=_drill_run_name, log_prints=True)
def run_drill_flow(scenario: str = "clean", store: str = "", keep: bool = False, echo: bool = False) -> dict[str, Any]:
    """A scheduled or manual drill (drill-ops schedules it): ``scenario`` is a name in
    runbooks/drills or a path; ``store`` defaults to STANCH_STORE / <STANCH_HOME>/incidents. Every
    call gets a new incident id; ``echo`` shows the run's progress on stdout. The flow run is tagged
    ``runbook:``/``drill``/``severity:``/``scenario:`` (``run_drill``). Returns the scorecard
    as JSON plus ``exit_code`` (1: a probe or target failed). The flow run completes either way
    (a failed drill is a result, not a crash); it fails only when the drill could not run. An
    interrupted drill (Ctrl-C, SIGTERM) returns ``exit_code`` 130, ``interrupted`` (why) and no
    scorecard (``scorecard`` None): nothing is written that history or scoring would count."""
    from integrations.settings import StanchSettings

    settings = StanchSettings()
    # no --store: STANCH_STORE, a folder or PostgreSQL (then the database is the record of the run)
    target = Path(store) if store else settings.store_dir
    url = None if store else settings.store_url
    result = run_drill(contract.resolve_scenario(scenario), store=target, keep=keep, echo=echo, store_url=url)
    return {"incident_id": result.incident_id, "folder": str(result.folder), "exit_code": result.exit_code,
            "scorecard": result.scorecard.model_dump(mode="json") if result.scorecard is not None else None,
            "interrupted": result.interrupted}
