"""Approvals across processes: the typed input a paused run waits for, and how a decision
(from Slack, the CLI, or expiry) reaches the paused run.

Owns: ``ApprovalDecision`` (the ``RunInput`` a run pauses for), ``await_approval`` (the pause,
and the verdict on each decision received), and ``submit_decision`` for processes that run
Prefect anyway (the Slack app, drills: the API from their Prefect settings). Sending a decision
itself is plain HTTP in ``flows.engine.decisions`` (Prefect-free, so ``stanch approve`` takes
about a second); the rules of who may approve live in ``flows.engine.approval_policy``.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.flow_runs import pause_flow_run, resume_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.settings import get_current_settings

from flows.engine import decisions
from flows.engine.approval_keys import SignedFields
from flows.engine.approval_keys import verify as verify_signed
from flows.engine.approval_policy import ApprovalTally, allowed_approvers, refusal
from flows.engine.compiler import PlannedStep
from flows.engine.decisions import OUTCOMES, PrefectApi, auth_headers, pending_approval, recorded_api, wait_outcome
from flows.engine.run_api import current_api_url
from flows.engine.spec.models import Approval
from integrations.settings import StanchSettings

log = logging.getLogger("stanch.approvals")

__all__ = ["OUTCOMES", "ApprovalDecision", "await_approval", "pending_approval", "prefect_api", "submit_decision",
           "wait_outcome"]


class ApprovalDecision(RunInput):
    """What a paused approval step receives. ``approver`` is ``slack:U…``, ``cli:U…`` or ``expiry``.

    ``nonce`` identifies the decision: the run records it in the ``approval.*`` event it writes, so
    the sender can tell whether its decision counted (``wait_outcome``). A ``cli:`` decision also
    carries an Ed25519 ``signature`` over the fields (``flows.engine.approval_keys``) made at ``signed_at``."""

    approve: bool = False
    approver: str = "expiry"
    step: str = ""
    comment: str = ""
    nonce: str = ""
    signed_at: float = 0.0
    signature: str = ""

    def signed_fields(self, incident_id: str) -> SignedFields:
        return SignedFields(incident=incident_id, step=self.step, approve=self.approve,
                            approver=_bare(self.approver), comment=self.comment, signed_at=self.signed_at,
                            nonce=self.nonce)


def _bare(identity: str) -> str:
    return identity.split(":", 1)[1] if ":" in identity else identity


def prefect_api() -> PrefectApi | None:
    """The Prefect API this process's Prefect settings name (PREFECT_API_URL from the environment,
    a profile, or a test harness), with Prefect's auth headers; None when none is configured."""
    api = get_current_settings().api

    def secret(value: Any) -> str | None:
        return value.get_secret_value() if hasattr(value, "get_secret_value") else value

    return PrefectApi(str(api.url), auth_headers(secret(api.auth_string), secret(api.key))) if api.url else None


def submit_decision(store: Path, incident_id: str, step_id: str, approver: str, approve: bool,
                    comment: str = "", wait: float = 10.0, *, nonce: str = "", signed_at: float = 0.0,
                    signature: str = "") -> str:
    """``flows.engine.decisions.submit_decision`` from a process that runs Prefect (the Slack app,
    drills): to the server Prefect is configured for here, else the one the run recorded, else
    the temporary server Prefect started in this process. Returns the decision's nonce."""
    def api_of(meta: dict[str, Any]) -> PrefectApi:
        configured = prefect_api()
        if configured is not None:
            return configured
        here = current_api_url() if not meta.get("prefect_api_url") else None
        return PrefectApi(here) if here else recorded_api(meta)

    return decisions.submit_decision(store, incident_id, step_id, approver, approve, comment, wait, nonce=nonce,
                                     signed_at=signed_at, signature=signature, api_of=api_of)


def _group_members(settings: StanchSettings, approval: Approval) -> tuple[dict[str, list[str]], str | None]:
    """Expand ``@handle`` approvers through Slack; a Slack problem is returned, not raised."""
    handles = [a[1:] for a in approval.approvers if a.startswith("@")]
    if not handles or settings.slack_token is None:
        return {}, None
    from integrations.slack import SlackClient

    members: dict[str, list[str]] = {}
    try:
        client = SlackClient.from_settings(settings)
        for h in handles:
            members[h] = client.usergroup_members(h)
    except Exception as exc:
        return members, f"could not expand approver groups through Slack: {exc}"
    return members, None


#: the Prefect server's answer when a pause key is proposed a second time
_PAUSE_REPLAYED = "already made this state transition"


def _expire_later(flow_run_id: UUID, step_id: str, seconds: float, done: threading.Event) -> threading.Thread:
    """At expiry, resume the paused run with a deny from 'expiry' (a caught pause timeout would
    still end the run Failed, see DESIGN.md), retrying while the pause is being proposed."""

    def fire() -> None:
        if done.wait(seconds):
            return
        decision = ApprovalDecision(approve=False, approver="expiry", step=step_id).model_dump()
        while not done.is_set():
            try:
                resume_flow_run(flow_run_id, run_input=decision)
                # delivered; but if the waiting side had to propose its pause again (a new key,
                # see ``_PAUSE_REPLAYED``), it waits for an answer under that key: answer again
                done.wait(5.0)
            except Exception:
                done.wait(0.5)

    t = threading.Thread(target=fire, name=f"expire-{step_id}", daemon=True)
    t.start()
    return t


def _decision_refusal(engine: Any, step: PlannedStep, approval: Approval, decision: ApprovalDecision,
                      tally: ApprovalTally, seen_nonces: set[str]) -> str | None:
    """Why the run does not count ``decision``: wrong step, replayed, unsigned/forged CLI identity,
    or the approval rules — with ``@group`` membership looked up now, when the decision arrives
    (a Slack outage when the approval was requested must not lock every group member out)."""
    if decision.step and decision.step != step.id:
        return f"decision was for step {decision.step!r}, but {step.id!r} is waiting"
    if decision.nonce and decision.nonce in seen_nonces:
        return "this decision was already received (replay)"
    if decision.approver.startswith("cli:"):
        problem = verify_signed(engine.settings.approver_keys_file, decision.signed_fields(engine.incident.id),
                                decision.signature)
        if problem:
            return f"{_bare(decision.approver)}: {problem}"
    members, slack_problem = _group_members(engine.settings, approval)
    if slack_problem:
        engine.record("slack.unavailable", step=step.id, data={"error": slack_problem})
    reason = refusal(approval, decision.approver, engine.initiator, allowed_approvers(approval, members),
                     tally.approvals)
    if reason and slack_problem and "not allowed" in reason:
        reason += "; @group membership could not be checked just now (Slack unavailable): try again"
    return reason


def await_approval(engine: Any, step: PlannedStep, message: str | None = None
                   ) -> tuple[bool, dict[str, Any], str | None]:
    """Pause the run until the step is approved ``min_approvals`` times, denied, or expires.

    ``message`` is the rendered approval message (``Engine.approval_message``). Returns
    (granted, output, error). Every decision, counted or refused, goes to the timeline.
    """
    approval = step.approval
    assert approval is not None
    message = message if message is not None else step.title
    expires = approval.expires
    squeeze: float | None = engine.settings.drill_approval_expires if engine.drill else None
    compressed = {"runbook_expires_s": approval.expires} if squeeze is not None and squeeze < expires else {}
    if squeeze is not None and compressed:
        expires = squeeze  # drill time compression (scenario approval_expires)
    expires_at = datetime.now(UTC) + timedelta(seconds=expires)
    engine.record("approval.requested", step=step.id, data={
        "approvers": approval.approvers, "min_approvals": approval.min_approvals,
        "expires_at": expires_at.isoformat(), "message": message, "on_deny": approval.on_deny, **compressed})
    slack_problem = engine.notifier.approval_request(step, approval, expires_at, message)
    if slack_problem:
        engine.record("slack.unavailable", step=step.id, data={"error": slack_problem})
    tally = ApprovalTally(approval)
    done = threading.Event()
    flow_run_id = flow_run.get_id()
    if flow_run_id:
        _expire_later(UUID(str(flow_run_id)), step.id, expires, done)
    n = 0
    seen_nonces: set[str] = set()
    try:
        while not tally.decided:
            n += 1
            try:
                decision = pause_flow_run(wait_for_input=ApprovalDecision, timeout=int(expires) + 120,
                                          poll_interval=1, key=f"{step.id}-{n}")
            except Exception as exc:
                # a loaded server (SQLite 'database is locked', client retries) can commit the pause
                # and then refuse the client's retry of it: propose it again under a new key (the
                # expiry keeps answering until the approval is decided), a bounded number of times
                if _PAUSE_REPLAYED not in str(exc) or n >= 10:
                    raise
                log.warning("approval %s: pause %s-%s was replayed by the client (%s); pausing again",
                            step.id, step.id, n, exc)
                time.sleep(1.0)
                continue
            if decision is None:  # pragma: no cover - only without wait_for_input
                continue
            if decision.approver == "expiry":
                engine.record("approval.expired", step=step.id, data={
                    "reason": f"nobody decided within {expires:.0f}s: denied"})
                return False, {"approved_by": tally.approvals, "expired": True}, (
                    f"approval expired after {expires:.0f}s with {len(tally.approvals)} of "
                    f"{approval.min_approvals} approvals: denied")
            reason = _decision_refusal(engine, step, approval, decision, tally, seen_nonces)
            seen_nonces.add(decision.nonce)
            tag = {"decision": decision.nonce} if decision.nonce else {}
            if reason:
                engine.record("approval.refused", step=step.id, actor=decision.approver,
                              data={"approver": decision.approver, "reason": reason, **tag})
                continue
            if not decision.approve:
                tally.denied_by = decision.approver
                engine.record("approval.denied", step=step.id, actor=decision.approver,
                              data={"approver": decision.approver, "comment": decision.comment, **tag})
                return False, {"approved_by": tally.approvals, "denied_by": decision.approver}, (
                    f"denied by {decision.approver}" + (f": {decision.comment}" if decision.comment else ""))
            tally.approvals.append(decision.approver)
            engine.record("approval.approved", step=step.id, actor=decision.approver, data={
                "approver": decision.approver, "comment": decision.comment,
                "count": len(tally.approvals), "needed": approval.min_approvals, **tag})
    finally:
        done.set()
    engine.record("approval.granted", step=step.id, data={"approved_by": tally.approvals})
    return True, {"approved_by": tally.approvals}, None
