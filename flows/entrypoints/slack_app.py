"""``stanch slack serve``: the Slack app — the ``/stanch`` slash command and the approval buttons.

Owns: the slack-bolt ``App`` factory (``create_app``), the HTTP entry (``serve``: Bolt's WSGI
adapter on ``/slack/events`` under a threaded werkzeug server), the Socket Mode entry
(``serve_socket_mode``) for installs without a public URL, the app's own settings
(``SlackAppConfig``, ``STANCH_SLACK_*``), and the request handling contract:

* Bolt verifies every request (v0 HMAC of the raw body with the signing secret, timestamp within
  5 minutes) before any listener runs: unsigned, mis-signed or stale requests get 401.
* Listeners ``ack()`` first (``process_before_response=False``) with only parsing, a
  seen-set check and the enqueue in front; validation, authorization, group look-ups and launching
  run after the ack on this module's bounded worker pool (``workers`` threads + ``max_pending``
  queued; beyond that the ack says "busy") and answer through ``response_url`` (``respond``).
* "started" is announced only once the flow run exists on the Prefect API. Creating it is
  bounded (``start_timeout`` from the command, per-call timeouts, retries with one idempotency
  key); when it cannot be created — or an in-process run dies before ``run.started`` — the
  incident is recorded as ``run.start_failed`` and the channel is told "failed to start" with the
  exact ``stanch resume`` command. Failures are logged redacted, never swallowed.
* A delivery seen before (Slack's ``X-Slack-Retry-Num`` retries, or any duplicate with the same
  team/channel/user/text/trigger_id) is acked and starts nothing; ``DeploymentLauncher`` also
  passes the key as Prefect's ``idempotency_key``.
* Refusals are explained ephemerally and, when an incident exists, recorded in its timeline as
  ``slack.refused``.

Must not touch: the flow body (``flows.engine.runtime``), the approval rules (``flows.engine.approval_policy``)
or the resume mechanics (``flows.engine.approvals``); Slack message layout of the incident thread
(``flows.engine.notify`` / ``integrations.slack``).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from slack_bolt import App, BoltRequest, BoltResponse
from slack_sdk import WebClient

from flows.engine.incident import Incident, IncidentNotFound, new_incident_id
from flows.engine.redaction import Redactor
from flows.entrypoints.slack.commands import (
    CHANNEL_ID,
    HELP_TEXT,
    MAX_COMMAND_CHARS,
    GroupDirectory,
    SeenSet,
    approval_context,
    dedupe_key,
    latest_incident,
    parse_command,
    render_list,
    render_status,
    resolve_runbook_name,
    run_refusal,
)
from flows.entrypoints.slack.files import confine_inputs
from flows.entrypoints.slack.gate import MAX_BODY_BYTES, SLACK_RESPONSE_ORIGINS, SlackGate, allowed_response_url
from flows.entrypoints.slack.launchers import (
    DEPLOYMENT,
    DeploymentLauncher,
    InProcessLauncher,
    LaunchRequest,
    RunLauncher,
    StartPolicy,
    describe,
    record_start_failure,
    resume_command,
)
from flows.store import current as current_store
from integrations.errors import ConfigurationError, InputError, RunbookError, StanchError
from integrations.settings import StanchSettings
from integrations.slack.blocks import escape

__all__ = [
    "EVENTS_PATH",
    "SlackAppConfig",
    "StanchSlack",
    "create_app",
    "main",
    "serve",
    "serve_socket_mode",
    "wsgi_app",
]

from flows.engine.runbooks import REPO_RUNBOOKS

log = logging.getLogger("stanch.slack_app")


def _problem(exc: StanchError) -> str:
    """What a Slack user is told of ``exc``: an unknown incident in store-neutral words (never the
    server's folders or the database's address), anything else as it says."""
    from flows.store.postgres import StoreUnavailable  # here: the folder store never imports psycopg

    if isinstance(exc, IncidentNotFound):
        return exc.public
    if isinstance(exc, StoreUnavailable):
        log.error("slack: %s", exc)  # the address is for the operator's log, not for Slack
        return "the incident store cannot be reached right now; the stanch operators see why in the app's log"
    return str(exc)


EVENTS_PATH = "/slack/events"
APPROVE_ACTION = "stanch_approve"
DENY_ACTION = "stanch_deny"


class SlackAppConfig(BaseSettings):
    """Settings only the Slack app reads (``STANCH_SLACK_*``; token, signing secret, base URL and
    channel are in ``StanchSettings``)."""

    model_config = SettingsConfigDict(env_prefix="STANCH_SLACK_", extra="ignore")

    app_token: SecretStr | None = Field(default=None, description="xapp-… token for Socket Mode.")
    launcher: Literal["inprocess", "deployment"] = Field(
        default="inprocess", description="inprocess: runs in the app process; deployment: run_deployment().")
    deployment: str = Field(default=DEPLOYMENT, description="Deployment started by the deployment launcher.")
    runbooks_dir: Path | None = Field(default=None, description="Where runbook names resolve "
                                      "(default: ./runbooks, then the bundled runbooks).")
    default_allowed_users: list[str] = Field(
        default_factory=list, description="Who may start a runbook that has no slack.allowed_users (JSON list).")
    ui_url: str | None = Field(default=None, description="Prefect UI base URL (default: PREFECT_UI_URL).")
    drill: bool = Field(default=False, description="Start every run as a drill (sandbox only).")
    workers: int = Field(default=16, ge=1, le=256, description="Threads for post-ack work.")
    max_body_bytes: int = Field(default=MAX_BODY_BYTES, ge=1024, le=1024 * 1024,
                                description="Larger request bodies get 413 before they are read.")
    response_url_origins: list[str] = Field(
        default_factory=lambda: list(SLACK_RESPONSE_ORIGINS),
        description="Origins a Slack-supplied response_url may point at (JSON list of scheme://host[:port]); "
                    "the origin of STANCH_SLACK_BASE_URL (the stand-in) is added when that is set.")
    input_dirs: list[Path] = Field(
        default_factory=list,
        description="Folders a file-naming input given in Slack (inventory=…) must resolve inside "
                    "(JSON list; default: the folder of STANCH_INVENTORY).")
    max_pending: int = Field(default=200, ge=0, le=10_000, description="Post-ack jobs that may wait for a "
                             "thread; beyond that a command is refused at once (\"busy, try again\").")
    start_timeout: float = Field(default=30.0, gt=0, le=600, description="Seconds from the command to the "
                                 "\"started\" or \"failed to start\" message (queue wait included).")
    start_attempt_timeout: float = Field(default=5.0, gt=0, le=120, description="Seconds per Prefect API "
                                         "operation while creating a flow run (connect, read, write, pool).")
    start_attempts: int = Field(default=6, ge=1, le=20, description="Attempts to create a flow run "
                                "(same idempotency key; backoff 0.5 s, doubling up to 4 s).")

    def start_policy(self) -> StartPolicy:
        return StartPolicy(deadline=self.start_timeout, attempt_timeout=self.start_attempt_timeout,
                           attempts=self.start_attempts)


def _retry_num(headers: dict[str, Any]) -> int:
    for key, value in headers.items():
        if key.lower() == "x-slack-retry-num":
            raw = value[0] if isinstance(value, list | tuple) and value else value
            try:
                return int(str(raw))
            except ValueError:
                return 1
    return 0


def _code(text: str) -> str:
    return f"```\n{escape(text)}\n```"


class StanchSlack:
    """The handlers behind the Bolt app; one per process. ``register(app)`` wires them."""

    def __init__(self, settings: StanchSettings, config: SlackAppConfig, launcher: RunLauncher,
                 lookup_group: Callable[[str], list[str]], web: WebClient | None = None) -> None:
        self.settings = settings
        self.config = config
        self.launcher = launcher
        self.web = web
        if isinstance(launcher, InProcessLauncher) and launcher.on_failure is None:
            launcher.on_failure = self.run_failed  # a created run that then failed is reported, not lost
        self._slots = threading.BoundedSemaphore(config.workers + config.max_pending)
        self.store = settings.store_dir
        self.seen = SeenSet(self.store / ".slack" / "seen.txt", shared=current_store())
        self.groups = GroupDirectory(lookup_group)
        self.pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="stanch-slack")
        self._plans: dict[tuple[Path, int], tuple[Any, Any]] = {}
        self._decision_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self.decision_wait = 20.0  # seconds a click waits for the run to record whether it counted

    # ------------------------------------------------------------------ wiring
    def register(self, app: App) -> None:
        app.middleware(self.screen)
        app.command("/stanch")(self.on_command)
        app.action(re.compile(f"^({APPROVE_ACTION}|{DENY_ACTION})$"))(self.on_decision_button)

    def response_origins(self) -> list[str]:
        origins = list(self.config.response_url_origins)
        if self.settings.slack_base_url:
            origins.append(self.settings.slack_base_url)
        return origins

    def screen(self, body: dict[str, Any], next: Callable[[], None]) -> BoltResponse | None:
        """Global Bolt middleware (after Bolt's own signature check; HTTP and Socket Mode alike):
        a request whose ``response_url`` is not on an allowed origin, or whose command text is over
        the limit, is refused with 400 and starts nothing."""
        urls = [body.get("response_url")] if "response_url" in body else []
        urls += [u.get("response_url") for u in body.get("response_urls") or [] if isinstance(u, dict)]
        if "command" in body and not urls:
            urls = [None]  # a slash command always carries one
        bad = [u for u in urls if not allowed_response_url(u, self.response_origins())]
        if bad:
            log.warning("slack: refused a request whose response_url is not a Slack URL: %.200r", bad[0])
            return BoltResponse(status=400, body="response_url is not on an allowed host")
        text = body.get("text")
        if text is not None and (not isinstance(text, str) or len(text) > MAX_COMMAND_CHARS):
            return BoltResponse(status=200, body=json.dumps({
                "response_type": "ephemeral",
                "text": f":warning: the command is too long (at most {MAX_COMMAND_CHARS} characters)"}),
                headers={"content-type": "application/json;charset=utf-8"})
        next()
        return None

    def input_dirs(self) -> list[Path]:
        """Folders a file-naming input from Slack must resolve inside (flows.entrypoints.slack.files)."""
        if self.config.input_dirs:
            return list(self.config.input_dirs)
        dirs = [self.settings.inventory.parent] if self.settings.inventory is not None else []
        return dirs + ([self.settings.advisories_dir] if self.settings.advisories_dir is not None else [])

    def runbook_dirs(self) -> list[Path]:
        if self.config.runbooks_dir is not None:
            return [self.config.runbooks_dir]
        return [Path.cwd() / "runbooks", REPO_RUNBOOKS]

    def ui_link(self, flow_run_id: str | None) -> str | None:
        if not flow_run_id:
            return None
        base = self.config.ui_url
        if base is None:
            from prefect.settings import get_current_settings

            base = get_current_settings().ui_url
        return f"{base.rstrip('/')}/runs/flow-run/{flow_run_id}" if base else None

    def _submit(self, fn: Callable[..., None], *args: Any) -> bool:
        """Queue post-ack work; False (nothing queued) when ``workers + max_pending`` jobs are
        already waiting or running — the queue is bounded, never the ack."""
        if not self._slots.acquire(blocking=False):
            log.error("slack: post-ack queue full (%d jobs); refusing %s", self.config.workers
                      + self.config.max_pending, getattr(fn, "__name__", fn))
            return False

        def guarded() -> None:
            try:
                fn(*args)
            except Exception:  # never let a worker die silently
                log.exception("slack: post-ack work failed")
            finally:
                self._slots.release()
        self.pool.submit(guarded)
        return True

    # ------------------------------------------------------------------ /stanch
    def on_command(self, ack: Any, body: dict[str, Any], request: Any, respond: Any) -> None:
        try:
            cmd = parse_command(str(body.get("text") or ""))
        except InputError as exc:
            ack(response_type="ephemeral", text=f":warning: {escape(str(exc))}\n\n{HELP_TEXT}")
            return
        if cmd.name == "help":
            ack(response_type="ephemeral", text=HELP_TEXT)
            return
        key = dedupe_key(body)
        if not self.seen.claim(key):
            ack()
            log.info("slack: duplicate delivery of /stanch %s ignored (retry %s, key %s)", cmd.name,
                     _retry_num(dict(request.headers)), key)
            return
        user = str(body.get("user_id") or "")
        if cmd.name in ("list", "status"):
            try:  # the store may be unreachable (StoreUnavailable): one line, like every other refusal
                if cmd.name == "list":
                    text = render_list(self.store)
                else:
                    ref = cmd.args[0] if cmd.args else latest_incident(self.store)
                    text = "No incidents yet." if ref is None else render_status(self.store, ref)
            except StanchError as exc:
                text = f":warning: {escape(_problem(exc))}"
            ack(response_type="ephemeral", text=text)
        elif cmd.name == "run":
            not_after = time.monotonic() + self.config.start_timeout  # the start bound counts from here
            channel = str(body.get("channel_id") or "")
            if self._submit(self.start_run, user, cmd.args[0], list(cmd.args[1:]), key, respond,
                            channel if CHANNEL_ID.match(channel) else None, not_after):
                ack(response_type="ephemeral", text=f"Checking `{escape(cmd.args[0])}` and your inputs …")
            else:
                ack(response_type="ephemeral", text=":hourglass: stanch is busy starting other runs; nothing "
                    "was started — send the command again in a minute.")
        else:  # approve / deny
            ack(response_type="ephemeral", text=f"Submitting your decision on `{escape(cmd.args[1])}` …")
            self._submit(self.decide, user, cmd.args[0], cmd.args[1], cmd.name == "approve", respond, "command")

    def load_plan(self, path: Path) -> tuple[Any, Any]:
        """(runbook, plan) of a runbook file, cached until the file changes (validation is the
        costly part of a command; caching keeps it off the CPU while other commands are acked)."""
        from flows.engine.compiler import compile_plan
        from flows.engine.spec import load_runbook
        from integrations.base import default_registry

        cache_key = (path.resolve(), path.stat().st_mtime_ns)
        hit = self._plans.get(cache_key)
        if hit is None:
            registry = default_registry()
            loaded = load_runbook(path, registry)
            hit = (loaded.runbook, compile_plan(loaded.runbook, loaded.path, registry))
            self._plans[cache_key] = hit
        return hit

    def start_run(self, user: str, name: str, pairs: list[str], key: str, respond: Any,
                  channel_id: str | None = None, not_after: float | None = None) -> None:
        """After the ack: validate like the CLI, authorize, create the flow run (bounded by
        ``not_after``), then announce "started" — or report "failed to start" with an incident
        record that ``stanch resume`` continues."""
        from flows.engine import secret_inputs
        from flows.engine.compiler import parse_input_pairs, resolve_inputs
        from integrations.base import default_registry

        try:
            path = resolve_runbook_name(name, self.runbook_dirs())
            runbook, plan = self.load_plan(path)
            given = secret_inputs.with_refs_for_absent(plan, parse_input_pairs(pairs))
            resolve_inputs(plan, given)
            given = confine_inputs(plan, default_registry(), given, self.input_dirs())
        except RunbookError as exc:
            text = "\n".join(d.format() for d in exc.diagnostics) + f"\nerror: {exc}"
            respond(response_type="ephemeral", replace_original=False, text=_code(text))
            return
        except StanchError as exc:
            respond(response_type="ephemeral", replace_original=False, text=_code(f"error: {exc}"))
            return
        allowed = list(runbook.slack.allowed_users) if runbook.slack and runbook.slack.allowed_users \
            else list(self.config.default_allowed_users)
        try:
            reason = run_refusal(user, allowed, self.groups, runbook.name)
        except StanchError as exc:
            reason = f"could not check who may start `{runbook.name}` ({exc}); try again in a minute"
        if reason is not None:
            log.warning("slack: refused /stanch run %s for %s: %s", runbook.name, user, reason)
            respond(response_type="ephemeral", replace_original=False, text=f":no_entry: {reason}")
            return
        public, secrets = secret_inputs.split(plan, given)
        request = LaunchRequest(
            runbook_path=path, inputs=public, incident_id=new_incident_id(), store=self.store,
            initiator=f"slack:{user}", idempotency_key=key, drill=self.config.drill, slack_channel=channel_id,
            not_after=not_after, secrets=secrets, redactor=Redactor({v for v in secrets.values() if v}),
            secret_inputs=tuple(sorted(secrets)))
        try:
            result = self.launcher.launch(request)
        except Exception as exc:
            problem = request.redactor.text(str(exc) if isinstance(exc, StanchError) else describe(exc))
            if not isinstance(exc, StanchError):
                log.error("slack: launching %s failed unexpectedly:\n%s", request.incident_id,
                          request.redactor.text("".join(traceback.format_exception(exc))))
            self.start_failed(request, runbook.name, problem, respond, attempts=getattr(exc, "attempts", 0))
            return
        if result.duplicate:
            respond(response_type="ephemeral", replace_original=False,
                    text=f"Already started as incident `{result.incident_id}`.")
            return
        link = self.ui_link(result.flow_run_id)
        configured = runbook.slack.channel if runbook.slack and runbook.slack.channel else self.settings.slack_channel
        where = f"<#{channel_id}>" if channel_id else escape(configured)
        text = (f":rotating_light: <@{user}> started *{escape(runbook.title)}* (`{runbook.name}`)"
                f"{' as a DRILL' if self.config.drill else ''} — incident `{result.incident_id}`.\n"
                f"Step updates: the incident thread in {where} · `/stanch status {result.incident_id}`"
                + (f" · <{link}|Prefect run>" if link else ""))
        log.info("slack: %s started (%s, flow run %s, %d attempt(s))", result.incident_id, runbook.name,
                 result.flow_run_id, result.attempts)
        respond(response_type="in_channel", replace_original=False, text=text)

    # ------------------------------------------------------------------ start failures
    def start_failed(self, request: LaunchRequest, runbook: str, problem: str, respond: Any = None,
                     attempts: int = 0) -> None:
        """Nothing ran: write the incident record (``run.start_failed``) so ``stanch resume``
        can start it, log it, and say so in the channel with the exact command to type."""
        resume = resume_command(request.incident_id, request.secret_inputs)
        log.error("slack: %s (%s) failed to start: %s — resume with: %s", request.incident_id, runbook,
                  problem, resume)
        try:
            record_start_failure(request, runbook, problem, request.secret_inputs, attempts)
            how = f"Nothing ran. Start it with `{escape(resume)}`"
        except Exception as exc:
            log.error("slack: could not record the start failure of %s: %s", request.incident_id,
                      request.redactor.text(describe(exc)))
            how = "Nothing ran, and the incident record could not be written: send the `/stanch run` command again"
        if request.secret_inputs:
            how += " (secret inputs are not kept: give them again)"
        who = request.initiator.removeprefix("slack:")
        self._announce(request, f":x: <@{who}>'s `{escape(runbook)}` — incident `{request.incident_id}` "
                                f"*failed to start*: {escape(problem)}\n{how}.", respond)

    def run_failed(self, request: LaunchRequest, problem: str, started: bool) -> None:
        """``InProcessLauncher.on_failure``: a created run whose execution then failed."""
        if not started:
            self.start_failed(request, request.runbook_path.stem, problem)
            return
        resume = resume_command(request.incident_id, request.secret_inputs)
        self._announce(request, f":warning: incident `{request.incident_id}` stopped before it finished: "
                                f"{escape(problem)}\nContinue it with `{escape(resume)}`.", None)

    def _announce(self, request: LaunchRequest, text: str, respond: Any) -> None:
        """In the channel: through the command's response_url when we have it, else (or if that
        fails) with chat.postMessage to the channel the command came from."""
        if respond is not None:
            try:
                resp = respond(response_type="in_channel", replace_original=False, text=text)
                if getattr(resp, "status_code", 200) < 300:
                    return
                log.error("slack: response_url answered %s for %s", getattr(resp, "status_code", "?"),
                          request.incident_id)
            except Exception as exc:
                log.error("slack: response_url post for %s failed: %s", request.incident_id, describe(exc))
        channel = request.slack_channel or self.settings.slack_channel
        if self.web is None or not channel:
            log.error("slack: no way to tell the channel about %s", request.incident_id)
            return
        try:
            self.web.chat_postMessage(channel=channel, text=text)
        except Exception as exc:
            log.error("slack: chat.postMessage about %s failed: %s", request.incident_id, describe(exc))

    # ------------------------------------------------------------------ approvals
    def on_decision_button(self, ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any) -> None:
        ack()
        if not self.seen.claim(dedupe_key(body)):
            return
        user = str((body.get("user") or {}).get("id") or "")
        try:
            value = json.loads(action.get("value") or "{}")
            incident, step = str(value["incident"]), str(value["step"])
        except (ValueError, KeyError, TypeError):
            self._submit(respond, {"response_type": "ephemeral", "replace_original": False,
                                   "text": ":warning: this button carries no incident/step"})
            return
        self._submit(self.decide, user, incident, step, action.get("action_id") == APPROVE_ACTION, respond,
                     "button")

    def _lock_for(self, incident: str) -> threading.Lock:
        with self._locks_lock:
            return self._decision_locks.setdefault(incident, threading.Lock())

    def decide(self, user: str, incident_id: str, step: str, approve: bool, respond: Any, via: str) -> None:
        """Pre-check the clicker with approval_policy (friendly refusal), then hand the decision to
        the paused run, which checks it again and records the outcome."""
        from flows.engine.approval_policy import allowed_approvers, refusal
        from flows.engine.spec.models import Approval

        verb = "approve" if approve else "deny"

        def say(text: str) -> None:
            respond(response_type="ephemeral", replace_original=False, text=text)

        try:
            parse_command(f"{verb} {incident_id} {step}")  # the same id checks as the slash command
            inc = Incident.open_existing(self.store, incident_id)
        except StanchError as exc:
            say(f":warning: {escape(_problem(exc))}")
            return
        ctx = approval_context(inc, step)
        if ctx is None:
            say(f":warning: `{escape(incident_id)}` is not waiting for an approval of `{escape(step)}`")
            return
        data = ctx["event"].get("data") or {}
        try:
            approval = Approval(approvers=list(data.get("approvers") or []),
                                min_approvals=int(data.get("min_approvals") or 1))
            allowed = allowed_approvers(approval, self.groups.expand(approval.approvers))
        except StanchError as exc:
            say(f":warning: could not check the approvers ({escape(str(exc))}); try again in a minute")
            return
        except ValueError as exc:
            say(f":warning: the approval request of `{escape(step)}` is malformed: {escape(str(exc))}")
            return
        reason = refusal(approval, f"slack:{user}", ctx["initiator"], allowed, ctx["already"] if approve else [])
        if reason is not None:
            inc.timeline.append("slack.refused", step=step, actor=f"slack:{user}",
                                data={"action": verb, "reason": reason, "via": via})
            from flows.engine.checkpoints import sign_appended
            from integrations.settings import StanchSettings

            unsigned = sign_appended(StanchSettings(), inc.id, inc.timeline, "slack refusal")
            if unsigned:
                log.warning("slack: %s", unsigned)
            log.warning("slack: refused %s of %s/%s by %s: %s", verb, incident_id, step, user, reason)
            say(f":no_entry: Not counted: {escape(reason)}")
            return
        from flows.engine.approvals import submit_decision, wait_outcome  # Prefect: imported only when needed

        try:
            with self._lock_for(incident_id):  # one resume at a time per incident, each until the run answered
                nonce = submit_decision(self.store, incident_id, step, approver=f"slack:{user}", approve=approve,
                                        comment=f"via Slack {via}")
                outcome = wait_outcome(self.store, incident_id, nonce, timeout=self.decision_wait)
        except StanchError as exc:
            say(f":warning: {escape(_problem(exc))}")
            return
        except Exception as exc:
            log.exception("slack: could not submit %s for %s/%s", verb, incident_id, step)
            say(f":x: could not submit your decision: {escape(f'{type(exc).__name__}: {exc}')}")
            return
        where = f"`{escape(step)}` of `{escape(incident_id)}`"
        data = (outcome or {}).get("data") or {}
        if outcome is None:
            say(f":hourglass: your decision on {where} was sent, but the run has not confirmed it yet "
                f"(`/stanch status {escape(incident_id)}`).")
        elif outcome["kind"] == "approval.refused":
            say(f":no_entry: Not counted: your decision on {where} was refused by the run: "
                f"{escape(str(data.get('reason', '?')))}")
        elif outcome["kind"] == "approval.approved":
            say(f"Recorded: you approved {where} ({data.get('count', '?')} of {data.get('needed', '?')}). "
                "The outcome appears in the incident thread.")
        else:
            say(f"Recorded: you denied {where}. The outcome appears in the incident thread.")


def _web_client(settings: StanchSettings) -> WebClient:
    from integrations.slack.client import DEFAULT_BASE_URL, retry_handlers

    if settings.slack_token is None or not settings.slack_token.get_secret_value():
        raise ConfigurationError("STANCH_SLACK_TOKEN is not set: the Slack app needs the bot token (xoxb-…)")
    base = settings.slack_base_url or DEFAULT_BASE_URL
    return WebClient(token=settings.slack_token.get_secret_value(), base_url=base if base.endswith("/") else base + "/",
                     timeout=10, retry_handlers=retry_handlers(rate_limit_retries=1, max_retry_after=2.0,
                                                               server_error_retries=1, connection_retries=1))


def create_app(settings: StanchSettings | None = None, runner: RunLauncher | None = None, *,
               config: SlackAppConfig | None = None) -> App:
    """The Bolt app with ``/stanch`` and the approval buttons registered.

    ``runner`` defaults from ``config.launcher``: ``InProcessLauncher()`` or
    ``DeploymentLauncher(config.deployment)``. The handler object is ``app._stanch`` (tests)."""
    from integrations.slack.client import SlackClient

    settings = settings or StanchSettings()
    config = config or SlackAppConfig()
    if settings.slack_signing_secret is None or not settings.slack_signing_secret.get_secret_value():
        raise ConfigurationError("STANCH_SLACK_SIGNING_SECRET is not set: requests from Slack cannot be verified")
    web = _web_client(settings)
    if runner is None:
        runner = InProcessLauncher(config.start_policy()) if config.launcher == "inprocess" \
            else DeploymentLauncher(config.deployment, config.start_policy())
    if hasattr(runner, "warm_up"):
        runner.warm_up()  # imports paid at start-up, not inside the first run's start deadline
    slack = SlackClient(web, default_channel=settings.slack_channel)
    handlers = StanchSlack(settings, config, runner, slack.usergroup_members, web)
    app = App(client=web, signing_secret=settings.slack_signing_secret.get_secret_value(),
              process_before_response=False, name="stanch",
              listener_executor=ThreadPoolExecutor(max_workers=32, thread_name_prefix="stanch-bolt"))
    handlers.register(app)
    app._stanch = handlers  # type: ignore[attr-defined]
    return app


def _bolt_dispatch(app: App) -> Callable[[str, dict[str, Any], dict[str, str]], tuple[int, dict[str, str], bytes]]:
    def dispatch(raw: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        try:
            req = BoltRequest(body=raw, headers=dict(headers))
        except Exception:
            return 400, {"Content-Type": "text/plain; charset=utf-8"}, b"malformed body"
        if req.body != body:  # Bolt drops form bodies that merely mention "payload"; use the strict parse
            from slack_bolt.context import BoltContext
            from slack_bolt.request.internals import build_context

            req.body = body
            req.context = build_context(BoltContext({}), body)
        resp = app.dispatch(req)
        out = {k: v[0] for k, v in resp.headers.items() if v}
        return resp.status, out, resp.body.encode() if isinstance(resp.body, str) else bytes(resp.body or b"")
    return dispatch


def wsgi_app(app: App) -> SlackGate:
    """``POST /slack/events`` behind ``flows.entrypoints.slack.gate.SlackGate`` (signature, replay window and
    size checked on the raw request before anything parses it), then Bolt. Everything else: 404."""
    handlers: StanchSlack | None = getattr(app, "_stanch", None)
    limit = handlers.config.max_body_bytes if handlers is not None else MAX_BODY_BYTES
    return SlackGate(_bolt_dispatch(app), app._signing_secret, path=EVENTS_PATH, max_body=limit)


def serve(host: str = "127.0.0.1", port: int = 3000, *, app: App | None = None) -> None:
    """Serve the app over HTTP until interrupted: ``POST http://host:port/slack/events``.

    Put it behind your TLS-terminating proxy; Slack needs an https Request URL."""
    from werkzeug.serving import make_server

    server = make_server(host, port, wsgi_app(app or create_app()), threaded=True)
    log.warning("stanch Slack app listening on http://%s:%s%s", host, server.server_port, EVENTS_PATH)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def serve_socket_mode(*, app: App | None = None, app_token: str | None = None) -> None:
    """Socket Mode: the app dials out to Slack over a WebSocket (no public URL). Needs an
    app-level token (``xapp-…``, scope ``connections:write``) in ``STANCH_SLACK_APP_TOKEN``."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    configured = SlackAppConfig().app_token
    token = app_token or (configured.get_secret_value() if configured is not None else None)
    if not token:
        raise ConfigurationError("STANCH_SLACK_APP_TOKEN (xapp-…) is not set: Socket Mode needs an app-level token")
    SocketModeHandler(app or create_app(), app_token=token).start()


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.entrypoints.slack_app serve [--host H] [--port P]`` or ``… socket``."""
    parser = argparse.ArgumentParser(prog="stanch slack", description="Run the stanch Slack app.")
    sub = parser.add_subparsers(dest="mode", required=True)
    http = sub.add_parser("serve", help="HTTP: Slack POSTs to https://<your host>/slack/events")
    http.add_argument("--host", default="127.0.0.1")
    http.add_argument("--port", type=int, default=3000)
    sub.add_parser("socket", help="Socket Mode: no public URL needed (STANCH_SLACK_APP_TOKEN)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.mode == "serve":
            serve(args.host, args.port)
        else:
            serve_socket_mode()
    except StanchError as exc:
        print(f"error: {exc}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
