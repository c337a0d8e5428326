"""Incident status in Slack: one header message per incident, one threaded report per step —
exactly once across crashes and resumes.

Owns: ``StatusNotifier`` — best-effort posting through ``integrations.slack``. A Slack outage or
rate limit never fails containment: ``step_update`` returns the problem text so the engine can
record ``slack.unavailable`` in the timeline.

Exactly once: the header's place is recorded (``slack.header``) and every posted report too
(``slack.report_posted``, per step and status). A resumed run re-attaches to the recorded header
(or, if the crash came between posting and recording, finds it in the channel by its message
metadata) and edits it in place; it posts a step's report only if neither the timeline nor the
thread (by metadata) has it — a crash in a step's report phase leaves no gap and no duplicate.
Must not touch: Prefect (it is called from the runtime, but is itself Prefect-free).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from integrations.settings import StanchSettings

if TYPE_CHECKING:
    from flows.engine.compiler import Plan, PlannedStep
    from flows.engine.incident import Incident
    from flows.engine.resume import PriorProgress

Record = Callable[..., Any]
"""``record(kind, step=..., data=...)``: the engine's timeline append."""

NO_RUN_LINK = ("No Prefect run link: this run uses a temporary Prefect server that stops when the command "
               "ends (set PREFECT_API_URL to a lasting server for one)")
"""The header's footer when no Prefect UI URL is configured — the embedded temporary server of
``stanch run`` / ``stanch demo``, whose address is dead once the command ends."""


class StatusNotifier:
    def __init__(self, thread: Any, incident: Incident, plan: Plan, *, drill: bool,
                 fallback_channel: str | None = None, record: Record | None = None,
                 prior: PriorProgress | None = None) -> None:
        self.thread = thread
        self.fallback_channel = fallback_channel  # the runbook's channel, when the thread was asked elsewhere
        self.incident = incident
        self.plan = plan
        self.drill = drill
        self.record: Record = record or (lambda kind, **kw: None)
        self.prior = prior
        self.resumed = prior is not None and prior.runs > 0
        done = prior.steps if prior is not None else {}
        self.lines: dict[str, str] = {s.id: f"✅ {s.title} — succeeded" if s.id in done else f"⏳ {s.title}"
                                      for s in plan.steps}
        self.header_ts: str | None = None
        self.run_link: str | None = None  # the flow run in the Prefect UI (set by the runtime)
        self.run_link_note: str | None = None  # why there is no link (a temporary server), in its place
        self.posted: set[tuple[str, str]] = set(prior.reports_posted) if prior is not None else set()
        self._in_thread: set[tuple[str, str]] | None = None  # reports found by metadata (resume only)

    @classmethod
    def from_settings(cls, settings: StanchSettings, incident: Incident, plan: Plan, *,
                      drill: bool, channel: str | None = None, record: Record | None = None,
                      prior: PriorProgress | None = None) -> StatusNotifier:
        thread = None
        if settings.slack_token is not None:
            from integrations.slack import IncidentThread, SlackClient

            configured = (plan.runbook.slack.channel if plan.runbook.slack and plan.runbook.slack.channel
                          else settings.slack_channel)
            thread = IncidentThread(SlackClient.from_settings(settings, drill=drill), channel or configured,
                                    incident_id=incident.id)
            return cls(thread, incident, plan, drill=drill,
                       fallback_channel=configured if channel and channel != configured else None,
                       record=record, prior=prior)
        return cls(thread, incident, plan, drill=drill, record=record, prior=prior)

    def _open(self, text: str, blocks: list[dict[str, Any]]) -> None:
        """Post the header. When the requested channel (where /stanch was typed) cannot be posted
        to, open the thread in the runbook's channel instead and say so there and in the timeline."""
        from integrations.base import PermanentActionError

        try:
            self.header_ts = self.thread.start(text, blocks)
            return
        except PermanentActionError as exc:
            if self.fallback_channel is None:
                raise
            wanted, why = str(self.thread.channel), str(exc)
        from integrations.slack import IncidentThread
        from integrations.slack.blocks import escape

        self.thread = IncidentThread(self.thread.client, self.fallback_channel, incident_id=self.incident.id)
        self.fallback_channel = None
        self.header_ts = self.thread.start(text, blocks)
        shown = f"<#{wanted}>" if wanted[:1] in "CG" and wanted.isalnum() else escape(wanted)
        self.incident.timeline.append("slack.fallback", data={
            "wanted": wanted, "used": self.thread.channel, "error": why})
        self.thread.post_update(f":information_source: This incident thread opened here because {shown} "
                                f"(where the run was started) could not be posted to: {escape(why)}")

    def _header(self, status: str) -> tuple[str, list[dict[str, Any]]]:
        from integrations.slack.blocks import header_blocks, header_text

        title = self.plan.runbook.title
        blocks = header_blocks(self.incident.id, title, self.plan.runbook.severity, status,
                               list(self.lines.values()), drill=self.drill,
                               links=[("Prefect run", self.run_link)] if self.run_link else (),
                               note=None if self.run_link else self.run_link_note)
        return header_text(self.incident.id, title, self.plan.runbook.severity, status, drill=self.drill), blocks

    def start(self) -> str | None:
        """Post the header — or, on resume, find the existing one and edit it in place."""
        if self.thread is None:
            return None
        try:
            self._ensure_header()
        except Exception as exc:
            return _problem(exc)
        return None

    def _ensure_header(self) -> None:
        """Have a header: on resume the earlier attempt's (edited to now), else a new one. Also
        called later when Slack was unreachable at start, so an outage never yields two headers."""
        if self.header_ts is not None:
            return
        text, blocks = self._header("running")
        if self.resumed and self._reattach():
            self.thread.update_header(text, blocks)
            return
        self._post_header(text, blocks)

    def _post_header(self, text: str, blocks: list[dict[str, Any]]) -> None:
        self._open(text, blocks)
        self.record("slack.header", data={"channel": self.thread.channel, "ts": self.header_ts})

    def _reattach(self) -> bool:
        """Re-attach to the header of an earlier attempt: the recorded one if it still exists,
        else one found in the channel by metadata (posted, then the crash came before the record)."""
        from integrations.slack import HEADER_EVENT, IncidentThread

        recorded = self.prior.slack_header if self.prior is not None else None
        if recorded is not None:
            attached = IncidentThread.attach(self.thread.client, recorded["channel"], recorded["ts"],
                                             incident_id=self.incident.id)
            try:
                found = {str(m["ts"]) for m in attached.client.find_tagged(recorded["channel"], HEADER_EVENT)}
            except Exception:  # cannot read history (scope, outage): trust the record
                found = {recorded["ts"]}
            if recorded["ts"] in found:
                self.thread, self.header_ts = attached, recorded["ts"]
                return True
        ts = self.thread.find_header()
        if ts is None:
            return False
        self.header_ts = ts
        self.record("slack.header", data={"channel": self.thread.channel, "ts": ts, "found": "by metadata"})
        return True

    def step_update(self, step: PlannedStep, status: str, markdown: str) -> str | None:
        if self.thread is None:
            return None
        icon = {"succeeded": "✅", "failed": "❌", "skipped": "⏭️"}.get(status, "•")
        self.lines[step.id] = f"{icon} {step.title} — {status}"
        if (step.id, status) in self.posted:  # an earlier attempt posted it and recorded so
            return None
        try:
            self._ensure_header()
            if self._already_in_thread(step.id, status):
                self.posted.add((step.id, status))
                self.record("slack.report_posted", step=step.id, data={"status": status, "found": "by metadata"})
                return None
            ts = self.thread.post_report(step.title, self.incident.redactor.text(markdown), status,
                                         drill=self.drill, step=step.id)
            self.posted.add((step.id, status))
            self.record("slack.report_posted", step=step.id, data={"status": status, "ts": ts})
            text, blocks = self._header("running")
            self.thread.update_header(text, blocks)
        except Exception as exc:
            return _problem(exc)
        return None

    def _already_in_thread(self, step_id: str, status: str) -> bool:
        """Resume only: was the report posted by an attempt that died before recording it?"""
        if not self.resumed:
            return False
        if self._in_thread is None:
            self._in_thread = self.thread.reports_in_thread()
        return (step_id, status) in self._in_thread

    def approval_request(self, step: PlannedStep, approval: Any, expires_at: Any,
                         message: str | None = None) -> str | None:
        """Post Approve / Deny buttons in the incident thread (values name incident and step).
        ``message`` is the rendered approval message; secrets are masked here, at the edge."""
        if self.thread is None:
            return None
        import json

        from integrations.slack.blocks import approval_blocks

        value = json.dumps({"incident": self.incident.id, "step": step.id})
        asked = self.incident.redactor.text(message if message is not None else step.title)
        text, blocks = approval_blocks(step.id, asked, approval.approvers, approval.min_approvals, expires_at,
                                       value, drill=self.drill, on_deny=approval.on_deny,
                                       group_ids=self._group_ids(approval.approvers))
        self.lines[step.id] = f"🔒 {step.title} — waiting for approval"
        try:
            self._ensure_header()
            self.thread.post_update(text, blocks)
            htext, hblocks = self._header("waiting for approval")
            self.thread.update_header(htext, hblocks)
        except Exception as exc:
            return _problem(exc)
        return None

    def _group_ids(self, approvers: list[str]) -> dict[str, str]:
        """``@handle`` -> user group id (``S…``) through Slack, so the request pings the group; a
        Slack problem leaves the handle as plain text (the request is still posted)."""
        if not any(a.startswith("@") for a in approvers):
            return {}
        try:
            groups = self.thread.client.call("usergroups.list").get("usergroups", [])
        except Exception:
            return {}
        return {str(g.get("handle")): str(g.get("id")) for g in groups if g.get("handle") and g.get("id")}

    def witness(self, line: str) -> str | None:
        """Post a signed checkpoint's hash in the incident thread (a witness outside the store)."""
        if self.thread is None or self.header_ts is None:
            return None
        from integrations.slack.blocks import escape

        try:
            self.thread.post_update(f":closed_lock_with_key: {escape(line)}")
        except Exception as exc:
            return _problem(exc)
        return None

    def finish(self, outcome: str, postmortem: Any, declined: list[str] | None = None) -> str | None:
        if self.thread is None or self.header_ts is None:
            return None
        status = "contained" if outcome == "succeeded" else "FAILED — see thread"
        if declined and outcome == "succeeded":
            status += f" (declined: {', '.join(declined)}; skipped)"
        try:
            text, blocks = self._header(status)
            self.thread.update_header(text, blocks)
        except Exception as exc:
            return _problem(exc)
        return None

    def rolled_back(self, outcome: str) -> str | None:
        """After ``stanch rollback``: the run's header (the recorded one, else found by metadata)
        is edited to say so — ``outcome`` is "rolled back", "partly rolled back", … ."""
        if self.thread is None or self.prior is None:
            return None
        try:
            if self.header_ts is None and not self._reattach():
                return None  # the run never got a header (Slack was down all run): nothing to edit
            icon = {"succeeded": "✅", "failed": "❌", "skipped": "⏭️"}
            for step in self.plan.steps:
                status = self.prior.reports_written.get(step.id)
                if status:
                    self.lines.setdefault(step.id, f"{icon.get(status, '•')} {step.title} — {status}")
            text, blocks = self._header(outcome)
            self.thread.update_header(text, blocks)
        except Exception as exc:
            return _problem(exc)
        return None


def _problem(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
