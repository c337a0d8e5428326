"""Incident status in Slack: one header message per incident, one threaded update per step.

Owns: ``StatusNotifier`` — best-effort posting through ``integrations.slack``. A Slack outage or
rate limit never fails containment: ``step_update`` returns the problem text so the engine can
record ``slack.unavailable`` in the timeline.
Must not touch: Prefect (it is called from the runtime, but is itself Prefect-free).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from integrations.settings import StanchSettings

if TYPE_CHECKING:
    from flows.compiler import Plan, PlannedStep
    from flows.incident import Incident


class StatusNotifier:
    def __init__(self, thread: Any, incident: Incident, plan: Plan, *, drill: bool,
                 fallback_channel: str | None = None) -> None:
        self.thread = thread
        self.fallback_channel = fallback_channel  # the runbook's channel, when the thread was asked elsewhere
        self.incident = incident
        self.plan = plan
        self.drill = drill
        self.lines: dict[str, str] = {s.id: f"⏳ {s.title}" for s in plan.steps}
        self.header_ts: str | None = None

    @classmethod
    def from_settings(cls, settings: StanchSettings, incident: Incident, plan: Plan, *,
                      drill: bool, channel: str | None = None) -> StatusNotifier:
        thread = None
        if settings.slack_token is not None:
            from integrations.slack import IncidentThread, SlackClient

            configured = (plan.runbook.slack.channel if plan.runbook.slack and plan.runbook.slack.channel
                          else settings.slack_channel)
            thread = IncidentThread(SlackClient.from_settings(settings, drill=drill), channel or configured,
                                    incident_id=incident.id)
            return cls(thread, incident, plan, drill=drill,
                       fallback_channel=configured if channel and channel != configured else None)
        return cls(thread, incident, plan, drill=drill)

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
                               list(self.lines.values()), drill=self.drill)
        return header_text(self.incident.id, title, self.plan.runbook.severity, status, drill=self.drill), blocks

    def start(self) -> str | None:
        if self.thread is None:
            return None
        try:
            text, blocks = self._header("running")
            self._open(text, blocks)
        except Exception as exc:
            return _problem(exc)
        return None

    def step_update(self, step: PlannedStep, status: str, markdown: str) -> str | None:
        if self.thread is None:
            return None
        icon = {"succeeded": "✅", "failed": "❌", "skipped": "⏭️"}.get(status, "•")
        self.lines[step.id] = f"{icon} {step.title} — {status}"
        try:
            if self.header_ts is None:
                text, blocks = self._header("running")
                self._open(text, blocks)
            self.thread.post_report(step.title, self.incident.redactor.text(markdown), status,
                                    drill=self.drill)
            text, blocks = self._header("running")
            self.thread.update_header(text, blocks)
        except Exception as exc:
            return _problem(exc)
        return None

    def approval_request(self, step: PlannedStep, approval: Any, expires_at: Any) -> str | None:
        """Post Approve / Deny buttons in the incident thread (values name incident and step)."""
        if self.thread is None:
            return None
        import json

        from integrations.slack.blocks import escape

        value = json.dumps({"incident": self.incident.id, "step": step.id})
        who = ", ".join(approval.approvers)
        text = (f":lock: *Approval needed* for `{step.id}` — {escape(approval.message or step.title)}\n"
                f"Needs {approval.min_approvals} approval(s) from {escape(who)}; the initiator cannot approve. "
                f"Expires {expires_at:%Y-%m-%d %H:%M UTC} (then denied).")
        blocks = [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "actions", "block_id": f"approval:{step.id}", "elements": [
                {"type": "button", "action_id": "stanch_approve", "style": "primary", "value": value,
                 "text": {"type": "plain_text", "text": "Approve"}},
                {"type": "button", "action_id": "stanch_deny", "style": "danger", "value": value,
                 "text": {"type": "plain_text", "text": "Deny"}},
            ]},
        ]
        self.lines[step.id] = f"🔒 {step.title} — waiting for approval"
        try:
            if self.header_ts is None:
                htext, hblocks = self._header("running")
                self._open(htext, hblocks)
            self.thread.post_update(f"Approval needed for {step.id}", blocks)
            htext, hblocks = self._header("waiting for approval")
            self.thread.update_header(htext, hblocks)
        except Exception as exc:
            return _problem(exc)
        return None

    def finish(self, outcome: str, postmortem: Any) -> str | None:
        if self.thread is None or self.header_ts is None:
            return None
        try:
            text, blocks = self._header("contained" if outcome == "succeeded" else "FAILED — see thread")
            self.thread.update_header(text, blocks)
        except Exception as exc:
            return _problem(exc)
        return None


def _problem(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
