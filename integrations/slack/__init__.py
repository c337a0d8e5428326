"""Slack integration: the ``slack.post_message`` action and the incident thread helper.

Owns: registering ``slack.post_message`` (entry point ``stanch.integrations: slack``),
``IncidentThread`` (the incident header message edited in place, and the thread of status
updates and reports under it), and the process-local binding of incident id -> thread that lets
``slack.post_message`` with ``thread: true`` land in the incident thread.

Must not touch: ``flows``, ``prefect``, the incident store or timeline (the engine records what
happened; this package only talks to Slack). Slack being down must never fail containment:
every transient failure surfaces as ``SlackUnavailable`` for the engine to record and move on.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from pydantic import Field

from integrations.base import (
    ActionContext,
    ActionParams,
    ActionRegistry,
    ActionResult,
    ActionSpec,
    PlannedOperation,
)
from integrations.errors import ConfigurationError, InputError
from integrations.slack.blocks import (
    DRILL_BANNER,
    escape,
    fit_blocks,
    header_blocks,
    header_text,
    mention,
    report_blocks,
    split_mrkdwn,
)
from integrations.slack.client import SlackClient, SlackUnavailable, is_loopback_url

__all__ = [
    "HEADER_EVENT",
    "INTENT_EVENT",
    "REPORT_EVENT",
    "IncidentThread",
    "PostMessageParams",
    "PostMessageResult",
    "SlackClient",
    "SlackUnavailable",
    "bind_incident_thread",
    "bound_incident_thread",
    "header_blocks",
    "register",
    "report_blocks",
    "unbind_incident_thread",
]


# ---------------------------------------------------------------------- incident thread
class IncidentThread:
    """The incident's Slack home: one header message (edited as steps complete) and its thread.

    ``IncidentThread(client, channel).start(text, blocks)`` posts the header; ``post_update`` /
    ``post_report`` reply in the thread; ``update_header`` edits the header. Re-attach after a
    restart with ``IncidentThread.attach(client, channel_id, ts)``. Every method raises
    ``SlackUnavailable`` (transient) or ``PermanentActionError``; the engine should catch
    ``ActionError``, record it in the timeline and continue.
    """

    def __init__(
        self, client: SlackClient, channel: str | None = None, *, incident_id: str | None = None
    ) -> None:
        self.client = client
        self.channel = channel or client.default_channel
        self.incident_id = incident_id
        self.ts: str | None = None

    @classmethod
    def attach(
        cls, client: SlackClient, channel: str, ts: str, *, incident_id: str | None = None
    ) -> IncidentThread:
        thread = cls(client, channel, incident_id=incident_id)
        thread.ts = ts
        if incident_id:
            bind_incident_thread(incident_id, channel, ts)
        return thread

    @property
    def started(self) -> bool:
        return self.ts is not None

    @property
    def header_metadata(self) -> dict[str, Any] | None:
        """Message metadata of the header: how a resumed run finds it again (``find_header``)."""
        if not self.incident_id:
            return None
        return {"event_type": HEADER_EVENT, "event_payload": {"incident": self.incident_id}}

    def start(self, header_text: str, blocks: list[dict[str, Any]] | None = None) -> str:
        """Post the header message; returns its ``ts`` (the thread id). ``channel`` becomes the id."""
        if self.ts is not None:
            return self.ts
        self.channel, self.ts = self.client.post(self.channel, header_text, _fit(blocks),
                                                 metadata=self.header_metadata)
        if self.incident_id:
            bind_incident_thread(self.incident_id, self.channel, self.ts)
        return self.ts

    def find_header(self) -> str | None:
        """The ``ts`` of this incident's header in the channel, found by its metadata (newest
        first), after a crash lost the record of it; binds the thread. None: not posted."""
        if not self.incident_id:
            return None
        for msg in reversed(self.client.find_tagged(self.channel, HEADER_EVENT)):
            if (msg.get("metadata") or {}).get("event_payload", {}).get("incident") == self.incident_id:
                self.channel = self.client.channel_id(self.channel)
                self.ts = str(msg["ts"])
                bind_incident_thread(self.incident_id, self.channel, self.ts)
                return self.ts
        return None

    def reports_in_thread(self) -> set[tuple[str, str]]:
        """``(step, status)`` of the step reports already in the thread (by their metadata)."""
        found = set()
        for msg in self.client.find_tagged(self.channel, REPORT_EVENT, thread_ts=self._require()):
            payload = (msg.get("metadata") or {}).get("event_payload", {})
            if payload.get("incident") == self.incident_id:
                found.add((str(payload.get("step")), str(payload.get("status"))))
        return found

    def _require(self) -> str:
        if self.ts is None:
            raise ConfigurationError("incident thread not started: call start() or attach() first")
        return self.ts

    def post_update(self, text: str, blocks: list[dict[str, Any]] | None = None) -> str:
        """Reply in the thread; returns the reply's ``ts``. ``text`` must already be escaped."""
        _, ts = self.client.post(self.channel, text, _fit(blocks), thread_ts=self._require())
        return ts

    def post_report(
        self,
        title: str,
        markdown: str,
        status: str,
        fields: dict[str, object] | None = None,
        *,
        drill: bool = False,
        step: str | None = None,
    ) -> list[str]:
        """A status report (``report_blocks``) as one or more thread replies; returns their ``ts``.
        Its footer names the incident and ``step``; with ``step``, each reply also carries metadata
        naming incident, step and status (``reports_in_thread`` finds them after a crash)."""
        thread_ts = self._require()
        messages = report_blocks(title, markdown, status, fields, drill=drill, incident=self.incident_id, step=step)
        fallback = escape(f"{'[DRILL] ' if drill else ''}{title} — {status}")
        out = []
        for i, blocks in enumerate(messages):
            text = fallback if i == 0 else f"{fallback} (continued)"
            meta = None
            if step is not None:
                meta = {"event_type": REPORT_EVENT,
                        "event_payload": {"incident": self.incident_id or "", "step": step, "status": status,
                                          "part": i}}
            out.append(self.client.post(self.channel, text, _fit(blocks), thread_ts=thread_ts, metadata=meta)[1])
        return out

    def update_header(self, header_text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        """Edit the header message in place (``chat.update``)."""
        self.client.update(self.channel, self._require(), header_text, _fit(blocks),
                           metadata=self.header_metadata)

    def update_status(
        self,
        incident_id: str,
        title: str,
        severity: str,
        status: str,
        steps: list[Any],
        *,
        drill: bool = False,
    ) -> None:
        """Convenience: rebuild the header with ``header_blocks`` and edit it (or start the thread)."""
        text = header_text(incident_id, title, severity, status, drill=drill)
        blocks = header_blocks(incident_id, title, severity, status, steps, drill=drill)
        if self.ts is None:
            self.start(text, blocks)
        else:
            self.update_header(text, blocks)


def _fit(blocks: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Every message stanch posts is cut to Block Kit's limits first (``fit_blocks``), with a
    visible truncation note, so Slack never rejects an incident's report with ``invalid_blocks``."""
    return None if blocks is None else fit_blocks(blocks)


HEADER_EVENT = "stanch_incident"
REPORT_EVENT = "stanch_report"

_threads: dict[str, tuple[str, str]] = {}
_threads_lock = threading.Lock()


def bind_incident_thread(incident_id: str, channel: str, ts: str) -> None:
    """Tell this process where an incident's thread is (``slack.post_message`` with ``thread: true``)."""
    with _threads_lock:
        _threads[incident_id] = (channel, ts)


def unbind_incident_thread(incident_id: str) -> None:
    with _threads_lock:
        _threads.pop(incident_id, None)


def bound_incident_thread(incident_id: str) -> tuple[str, str] | None:
    with _threads_lock:
        return _threads.get(incident_id)


# ---------------------------------------------------------------------- slack.post_message
class PostMessageParams(ActionParams):
    channel: str | None = Field(
        default=None, description="Channel name or id; defaults to STANCH_SLACK_CHANNEL."
    )
    text: str = Field(
        min_length=1,
        description="Message text. Escaped: it cannot ping or hide links. Secret inputs are masked.",
    )
    thread: bool = Field(default=False, description="Post in the incident thread (if the run has one).")
    mentions: list[str] = Field(
        default_factory=list,
        description="Users (U…), user groups (S…) or here/channel to mention, prepended to the text.",
    )


class PostMessageResult(ActionResult):
    channel: str
    ts: str
    thread_ts: str | None = None


def _post_message(ctx: ActionContext, params: PostMessageParams) -> PostMessageResult:
    settings = ctx.settings
    if settings.slack_token is not None:
        ctx.redact(settings.slack_token.get_secret_value())
    client = SlackClient.from_settings(settings, drill=ctx.drill)
    channel = params.channel or settings.slack_channel
    thread_ts: str | None = None
    if params.thread:
        bound = bound_incident_thread(ctx.incident_id)
        if bound is not None and (params.channel is None or params.channel in bound):
            channel, thread_ts = bound
        else:
            ctx.logger.warning(
                "slack.post_message: no incident thread bound for %s; posting to %s", ctx.incident_id, channel
            )
    try:
        pings = " ".join(mention(m.lstrip("@")) for m in params.mentions)
    except ValueError as err:
        raise InputError(f"slack.post_message: {err}") from None
    body = escape(ctx.mask(params.text))  # the edge: a secret input in the text is never posted
    prefix = (DRILL_BANNER + "\n") if ctx.drill else ""
    chunks = split_mrkdwn(body, 2800)  # room for the drill banner and mentions
    first = f"{prefix}{pings + ' ' if pings else ''}"
    fallback = f"{'[DRILL] ' if ctx.drill else ''}{pings + ' ' if pings else ''}"
    posted: list[tuple[str, str]] = []
    base_key = ctx.intent_key("slack", channel or "", thread_ts or "")
    keys = [f"{base_key}:{i}" for i in range(len(chunks))]
    found = _settle_open_intents(ctx, client, channel, thread_ts, keys)
    for i, chunk in enumerate(chunks):
        key = keys[i]
        prior = ctx.prior_intent(key)
        if prior is not None and prior.get("state") in ("sent", "found"):
            posted.append((str(prior["channel"]), str(prior["ts"])))  # posted by an earlier attempt
            continue
        if key in found:
            posted.append(found[key])
            continue
        text = (first + chunk) if i == 0 else chunk
        block = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
        fallback_text = (fallback + chunk) if i == 0 else chunk
        ctx.intent(key, {"sink": "slack", "channel": channel, "thread_ts": thread_ts, "part": i})
        ch, ts = client.post(channel, fallback_text, [block], thread_ts=thread_ts,
                             metadata={"event_type": INTENT_EVENT, "event_payload": {"key": key}})
        ctx.settle(key, "sent", {"channel": ch, "ts": ts})
        posted.append((ch, ts))
    ch, ts = posted[0]
    ctx.record(
        "slack.message_posted", {"channel": ch, "ts": ts, "thread_ts": thread_ts, "parts": len(posted)}
    )
    return PostMessageResult(channel=ch, ts=ts, thread_ts=thread_ts)


INTENT_EVENT = "stanch_intent"
"""Message metadata ``event_type`` of what ``slack.post_message`` posts; the payload's ``key`` is the
intent key (incident:step:item:slack:channel:thread:part), never the message text."""


def _settle_open_intents(
    ctx: ActionContext, client: SlackClient, channel: str | None, thread_ts: str | None, keys: list[str]
) -> dict[str, tuple[str, str]]:
    """Posts an earlier attempt started but never confirmed (a crash, a lost answer): look for them
    in the channel (or thread) by message metadata; found ones are settled ``found`` and not posted
    again, the others are posted again (they never reached Slack)."""
    open_keys = {k: p for k in keys if (p := ctx.prior_intent(k)) is not None and p.get("state") == "open"}
    if not open_keys:
        return {}
    oldest = min(_epoch(p.get("ts")) for p in open_keys.values()) - 120.0
    found: dict[str, tuple[str, str]] = {}
    for msg in client.find_tagged(channel or client.default_channel, INTENT_EVENT, thread_ts=thread_ts,
                                  oldest=oldest if thread_ts is None else None):
        key = str((msg.get("metadata") or {}).get("event_payload", {}).get("key", ""))
        if key in open_keys and key not in found:
            found[key] = (str(msg.get("channel") or client.channel_id(channel)), str(msg["ts"]))
            ctx.settle(key, "found", {"channel": found[key][0], "ts": found[key][1]})
    return found


def _epoch(ts: object) -> float:
    try:
        return datetime.fromisoformat(str(ts).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _describe_post_message(ctx: ActionContext, params: PostMessageParams) -> list[PlannedOperation]:
    channel = params.channel or ctx.settings.slack_channel
    notes = []
    if params.thread:
        notes.append("in the incident thread")
    if ctx.drill:
        base = ctx.settings.slack_base_url or ""
        notes.append(
            "drill: sandbox Slack" if is_loopback_url(base) else "drill: REFUSED (Slack is not the sandbox)"
        )
    return [
        PlannedOperation(
            service="slack", operation="chat.postMessage", resources=[channel], note="; ".join(notes) or None
        )
    ]


POST_MESSAGE = ActionSpec[PostMessageParams, PostMessageResult](
    name="slack.post_message",
    summary="Post a (escaped) message to a Slack channel or the incident thread.",
    params=PostMessageParams,
    result=PostMessageResult,
    run=_post_message,
    mutating=True,
    idempotent=False,
    describe=_describe_post_message,
)


def register(registry: ActionRegistry) -> None:
    """Entry point ``stanch.integrations: slack``."""
    registry.register(POST_MESSAGE)
