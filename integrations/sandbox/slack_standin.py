"""A local stand-in for the Slack Web API, for the sandbox, drills and tests.

Owns: an in-process HTTP server (werkzeug, threaded, bound to 127.0.0.1 on a free port) that
answers the Web API methods stanch uses -- ``auth.test``, ``chat.postMessage``, ``chat.update``,
``chat.postEphemeral``, ``users.info``, ``usergroups.list``, ``usergroups.users.list``,
``conversations.info``, ``conversations.list``, ``conversations.history``,
``conversations.replies`` (message ``metadata`` is stored on post/update and returned with
``include_all_metadata``, as Slack does) -- the way
Slack does (bearer-token check, Block Kit size limits -> ``invalid_blocks``, ``ratelimited`` with
``Retry-After``), a seeded workspace (users, the ``security-leads`` user group, channels), an
in-memory record of every call, and fault injection (429s, 5xx outages) for drills.

Interaction ``response_url`` webhooks: ``response_url(...)`` mints ``<url>/hooks/<id>``; a POST there
is recorded (``responses()``) and, like Slack, each URL takes at most 5 posts (then 404).

Control endpoints (not part of Slack): ``GET /_calls`` / ``DELETE /_calls`` (the call record),
``GET /_messages`` (posted messages), ``POST /_fault`` / ``DELETE /_fault`` (fault injection),
``/_killpoint`` (test-only: SIGKILL a run when a given call arrives, before or after it is
handled -- see ``integrations.sandbox.killpoints``; off unless ``STANCH_SANDBOX_KILLPOINTS=1``).

Must not touch: ``flows``, ``prefect``, the real Slack, or any real credential. It stores the
token it was configured with (a sandbox ``xoxb-`` value) but never records or returns it:
recorded ``Authorization`` headers are masked.

Run it alone with ``python -m integrations.sandbox.slack_standin --port 0`` (prints the URL).
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

__all__ = [
    "DEFAULT_TOKEN",
    "SEED_CHANNELS",
    "SEED_USERGROUPS",
    "SEED_USERS",
    "SlackStandIn",
]

DEFAULT_TOKEN = "xoxb-stanch-sandbox-token"
TEAM_ID = "T0STANCH01"
BOT_USER_ID = "U0STANCHBOT"
BOT_ID = "B0STANCHBT1"

# Block Kit limits Slack enforces on chat.postMessage / chat.update.
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_TEXT = 40000

SEED_USERS: dict[str, dict[str, Any]] = {
    "U0ONCALL": {"name": "oncall", "real_name": "Olive On-Call", "title": "SRE on call"},
    "U0LEAD1": {"name": "lead1", "real_name": "Lena Lead", "title": "Security lead"},
    "U0LEAD2": {"name": "lead2", "real_name": "Lars Lead", "title": "Security lead"},
    "U0OUTSIDER": {"name": "outsider", "real_name": "Otto Outsider", "title": "Marketing"},
    BOT_USER_ID: {"name": "stanch", "real_name": "stanch", "title": "", "is_bot": True},
}
SEED_USERGROUPS: dict[str, dict[str, Any]] = {
    "S0SECLEADS": {"handle": "security-leads", "name": "Security leads", "users": ["U0LEAD1", "U0LEAD2"]},
    "S0ONCALL": {"handle": "oncall", "name": "On-call", "users": ["U0ONCALL"]},
}
SEED_CHANNELS: dict[str, str] = {"C0INCIDENT": "incident", "C0SECURITY": "security", "C0DRILLS": "drills"}


class _QuietHandler(WSGIRequestHandler):
    """No per-request access log on stderr (tests and drills read ``calls()`` instead)."""

    def log(self, type: str, message: str, *args: Any) -> None:
        return


class _SlackError(Exception):
    def __init__(self, error: str, status: int = 200, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.extra = extra


@dataclass
class _Fault:
    count: int
    status: int = 429
    retry_after: int = 1
    error: str = "ratelimited"


@dataclass
class _Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None
    user: str = BOT_USER_ID
    edited: list[float] = field(default_factory=list)
    metadata: dict[str, Any] | None = None

    def as_dict(self, *, metadata: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "message", "user": self.user, "ts": self.ts, "text": self.text,
                               "channel": self.channel}
        if self.user == BOT_USER_ID:
            out["bot_id"] = BOT_ID
        if self.blocks is not None:
            out["blocks"] = self.blocks
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
        if self.edited:
            out["edited"] = {"user": self.user, "ts": f"{self.edited[-1]:.6f}"}
        if metadata and self.metadata is not None:
            out["metadata"] = self.metadata
        return out


class SlackStandIn:
    """The Slack Web API, locally. ``SlackStandIn().start()`` or ``with SlackStandIn() as slack:``.

    ``url`` is the server root; slack_sdk wants ``api_url`` (``url + "/api/"``) as ``base_url``.
    ``calls(method)`` returns recorded calls; ``inject_fault(...)`` scripts 429s / outages.
    """

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        auto_create_channels: bool = True,
        users: dict[str, dict[str, Any]] | None = None,
        usergroups: dict[str, dict[str, Any]] | None = None,
        channels: dict[str, str] | None = None,
    ) -> None:
        if not token.startswith("xox"):
            raise ValueError("the stand-in token must look like a Slack token (xoxb-...)")
        self._token = token
        self._host = host
        self._port = port
        self.auto_create_channels = auto_create_channels
        self.users = {k: dict(v) for k, v in (users or SEED_USERS).items()}
        self.usergroups = {k: dict(v) for k, v in (usergroups or SEED_USERGROUPS).items()}
        self.channels: dict[str, str] = dict(channels or SEED_CHANNELS)  # id -> name
        self._lock = threading.RLock()
        self._calls: list[dict[str, Any]] = []
        self._messages: dict[tuple[str, str], _Message] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._ts_counter = itertools.count(1)
        self._chan_counter = itertools.count(1)
        self._hook_counter = itertools.count(1)
        self._responses: list[dict[str, Any]] = []
        self._hook_uses: dict[str, int] = {}
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "api.test": self._api_test,
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "users.info": self._users_info,
            "usergroups.list": self._usergroups_list,
            "usergroups.users.list": self._usergroups_users_list,
            "conversations.info": self._conversations_info,
            "conversations.list": self._conversations_list,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
        }

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> SlackStandIn:
        if self._server is not None:
            return self
        from integrations.sandbox.killpoints import KillPoints

        self.killpoints = KillPoints(self._wsgi, identify=_slack_method)
        self._server = make_server(
            self._host, self._port, self.killpoints, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="slack-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> SlackStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Server root, e.g. ``http://127.0.0.1:53817`` (no trailing slash)."""
        if self._server is None:
            raise RuntimeError("SlackStandIn is not started")
        return f"http://{self._host}:{self._server.server_port}"

    @property
    def api_url(self) -> str:
        """The ``base_url`` for ``slack_sdk.WebClient`` / ``STANCH_SLACK_BASE_URL``."""
        return self.url + "/api/"

    @property
    def token(self) -> str:
        """The token clients must present (a sandbox value, never a real one)."""
        return self._token

    # ------------------------------------------------------------------ test helpers
    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        """Recorded calls (oldest first): ``method, params, headers, time, status, ok, error``."""
        with self._lock:
            return [dict(c) for c in self._calls if method is None or c["method"] == method]

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def messages(self, channel: str | None = None, thread_ts: str | None = None) -> list[dict[str, Any]]:
        """Messages as they stand now (after edits, with their metadata), oldest first; filter by
        channel id or thread."""
        with self._lock:
            msgs = sorted(self._messages.values(), key=lambda m: float(m.ts))
            return [
                m.as_dict(metadata=True)
                for m in msgs
                if (channel is None or m.channel == channel)
                and (thread_ts is None or m.thread_ts == thread_ts)
            ]

    def add_message(
        self,
        channel: str,
        text: str,
        *,
        user: str = "U0OUTSIDER",
        thread_ts: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Test helper: a message someone else (a person, by default) posted; returns its ``ts``."""
        with self._lock:
            cid = self._resolve_channel(channel)
            msg = _Message(channel=cid, ts=self._next_ts(), text=text, blocks=None, thread_ts=thread_ts,
                           user=user, metadata=metadata)
            self._messages[(cid, msg.ts)] = msg
            return msg.ts

    def response_url(self) -> str:
        """A fresh ``response_url`` as Slack puts in slash-command and interaction payloads."""
        return f"{self.url}/hooks/T0STANCH01/{next(self._hook_counter):06d}"

    def responses(self, response_url: str | None = None) -> list[dict[str, Any]]:
        """Bodies POSTed to ``response_url`` webhooks (oldest first): ``hook``, ``body``, ``time``, ``status``."""
        hook = response_url.rsplit("/hooks/", 1)[-1] if response_url else None
        with self._lock:
            return [dict(r) for r in self._responses if hook is None or r["hook"] == hook]

    def inject_fault(
        self,
        method: str = "*",
        count: int = 1,
        *,
        status: int = 429,
        retry_after: int = 1,
        error: str | None = None,
    ) -> None:
        """The next ``count`` calls of ``method`` (``*`` = any) answer ``status`` (429 or 5xx)."""
        if count < 1:
            raise ValueError("count must be >= 1")
        default_error = "ratelimited" if status == 429 else "service_unavailable"
        with self._lock:
            self._faults.setdefault(method, []).append(
                _Fault(
                    count=count,
                    status=status,
                    retry_after=max(0, int(retry_after)),
                    error=error or default_error,
                )
            )

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @contextmanager
    def outage(self, method: str = "*", status: int = 503) -> Iterator[None]:
        """Every call of ``method`` fails with ``status`` inside the block."""
        self.inject_fault(method, 10**9, status=status)
        try:
            yield
        finally:
            with self._lock:
                self._faults.pop(method, None)

    # ------------------------------------------------------------------ HTTP plumbing
    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        response = self._dispatch(request)
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        path = request.path
        if path == "/_calls":
            if request.method == "DELETE":
                self.clear_calls()
                return _json({"ok": True})
            return _json({"ok": True, "calls": self.calls(request.args.get("method"))})
        if path == "/_messages":
            return _json({"ok": True, "messages": self.messages(request.args.get("channel"))})
        if path == "/_fault":
            return self._fault_endpoint(request)
        if path.startswith("/api/"):
            return self._api(request, path[len("/api/") :])
        if path.startswith("/hooks/") and request.method == "POST":
            return self._hook(request, path[len("/hooks/") :])
        return _json({"ok": False, "error": "not_found"}, status=404)

    def _fault_endpoint(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.clear_faults()
            return _json({"ok": True})
        if request.method != "POST":
            return _json({"ok": False, "error": "method_not_allowed"}, status=405)
        try:
            spec = json.loads(request.get_data(as_text=True) or "{}")
            self.inject_fault(
                str(spec.get("method", "*")),
                int(spec.get("count", 1)),
                status=int(spec.get("status", 429)),
                retry_after=int(spec.get("retry_after", 1)),
                error=spec.get("error"),
            )
        except (ValueError, TypeError) as exc:
            return _json({"ok": False, "error": "invalid_fault", "detail": str(exc)}, status=400)
        return _json({"ok": True})

    def _hook(self, request: Request, hook: str) -> Response:
        try:
            body = json.loads(request.get_data(as_text=True) or "{}")
        except ValueError:
            return Response("invalid_payload", status=400)
        with self._lock:
            uses = self._hook_uses.get(hook, 0) + 1
            self._hook_uses[hook] = uses
            status = 200 if uses <= 5 else 404  # Slack: 5 uses per response_url
            self._responses.append({"hook": hook, "body": body, "time": time.time(), "status": status})
        return Response("ok" if status == 200 else "used_url", status=status, mimetype="text/plain")

    def _params(self, request: Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.args.items())
        ctype = (request.content_type or "").split(";")[0].strip().lower()
        raw = request.get_data(as_text=True)
        if ctype == "application/json" and raw:
            body = json.loads(raw)
            if isinstance(body, dict):
                params.update(body)
        elif raw:
            params.update(dict(parse_qsl(raw, keep_blank_values=True)))
        for key in ("blocks", "attachments", "metadata"):
            if isinstance(params.get(key), str) and params[key]:
                try:
                    params[key] = json.loads(params[key])
                except ValueError:
                    params[key] = _Invalid(params[key])
        return params

    def _take_fault(self, method: str) -> _Fault | None:
        with self._lock:
            for key in (method, "*"):
                queue = self._faults.get(key)
                if not queue:
                    continue
                fault = queue[0]
                fault.count -= 1
                if fault.count <= 0:
                    queue.pop(0)
                    if not queue:
                        del self._faults[key]
                return fault
        return None

    def _api(self, request: Request, method: str) -> Response:
        headers = {k: v for k, v in request.headers.items()}
        auth = headers.get("Authorization", "")
        if auth:
            headers["Authorization"] = auth.split(" ", 1)[0] + " ***"
        try:
            params = self._params(request)
        except ValueError:
            params = {}
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else str(params.get("token", ""))
        params.pop("token", None)
        record: dict[str, Any] = {
            "method": method,
            "params": _jsonable(params),
            "headers": headers,
            "time": time.time(),
            "token_ok": token == self._token,
        }
        status, body, extra_headers = self._handle(method, params, token)
        record.update(status=status, ok=bool(body.get("ok")), error=body.get("error"))
        with self._lock:
            self._calls.append(record)
        return _json(body, status=status, headers=extra_headers)

    def _handle(
        self, method: str, params: dict[str, Any], token: str
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        fault = self._take_fault(method)
        if fault is not None:
            hdrs = {"Retry-After": str(fault.retry_after)} if fault.status == 429 else {}
            return fault.status, {"ok": False, "error": fault.error}, hdrs
        handler = self._methods.get(method)
        if handler is None:
            return 404, {"ok": False, "error": "unknown_method"}, {}
        if not token:
            return 200, {"ok": False, "error": "not_authed"}, {}
        if token != self._token:
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        try:
            with self._lock:
                body = handler(params)
        except _SlackError as err:
            return err.status, {"ok": False, "error": err.error, **err.extra}, {}
        return 200, {"ok": True, **body}, {}

    # ------------------------------------------------------------------ Web API methods
    def _api_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"args": _jsonable(params)}

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://stanch-sandbox.slack.com/",
            "team": "stanch sandbox",
            "user": "stanch",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _resolve_channel(self, ref: Any) -> str:
        if not isinstance(ref, str) or not ref:
            raise _SlackError("channel_not_found")
        if ref in self.channels:
            return ref
        name = ref.lstrip("#")
        for cid, cname in self.channels.items():
            if cname == name:
                return cid
        if ref[0] in "CGD" and ref.isupper() and ref.isalnum():
            raise _SlackError("channel_not_found")
        if not self.auto_create_channels:
            raise _SlackError("channel_not_found")
        cid = f"C0AUTO{next(self._chan_counter):04d}"
        self.channels[cid] = name
        return cid

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts_counter):06d}"

    def _message_body(self, params: dict[str, Any]) -> tuple[str, list[dict[str, Any]] | None]:
        text = params.get("text")
        text = "" if text is None else str(text)
        blocks = params.get("blocks")
        if isinstance(blocks, _Invalid):
            raise _SlackError("invalid_blocks_format")
        if blocks is not None:
            _validate_blocks(blocks)
        if not text and not blocks:
            raise _SlackError("no_text")
        if len(text) > MAX_TEXT:
            raise _SlackError("msg_too_long")
        return text, blocks

    def _metadata(self, params: dict[str, Any]) -> dict[str, Any] | None:
        meta = params.get("metadata")
        if meta is None or meta == "":
            return None
        if (
            not isinstance(meta, dict)
            or not isinstance(meta.get("event_type"), str)
            or not meta["event_type"]
            or not isinstance(meta.get("event_payload"), dict)
        ):
            raise _SlackError("invalid_metadata_format")
        return {"event_type": meta["event_type"], "event_payload": _jsonable(meta["event_payload"])}

    def _chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve_channel(params.get("channel"))
        text, blocks = self._message_body(params)
        metadata = self._metadata(params)
        thread_ts = params.get("thread_ts") or None
        if thread_ts is not None:
            thread_ts = str(thread_ts)
            parent = self._messages.get((channel, thread_ts))
            if parent is None:
                raise _SlackError("thread_not_found")
            if parent.thread_ts:  # replying to a reply lands in the parent's thread
                thread_ts = parent.thread_ts
        msg = _Message(
            channel=channel, ts=self._next_ts(), text=text, blocks=blocks, thread_ts=thread_ts, metadata=metadata
        )
        self._messages[(channel, msg.ts)] = msg
        return {"channel": channel, "ts": msg.ts, "message": msg.as_dict()}

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve_channel(params.get("channel"))
        ts = str(params.get("ts") or "")
        msg = self._messages.get((channel, ts))
        if msg is None:
            raise _SlackError("message_not_found")
        text, blocks = self._message_body(params)
        metadata = self._metadata(params)
        msg.text = text
        if blocks is not None:
            msg.blocks = blocks
        if metadata is not None:
            msg.metadata = metadata
        msg.edited.append(time.time())
        return {"channel": channel, "ts": ts, "text": text, "message": msg.as_dict()}

    def _chat_post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        self._resolve_channel(params.get("channel"))
        if str(params.get("user") or "") not in self.users:
            raise _SlackError("user_not_in_channel")
        self._message_body(params)
        return {"message_ts": self._next_ts()}

    def _user(self, uid: str) -> dict[str, Any]:
        info = self.users[uid]
        return {
            "id": uid,
            "team_id": TEAM_ID,
            "name": info["name"],
            "real_name": info["real_name"],
            "deleted": bool(info.get("deleted", False)),
            "is_bot": bool(info.get("is_bot", False)),
            "tz": "Etc/UTC",
            "profile": {
                "display_name": info["name"],
                "real_name": info["real_name"],
                "title": info.get("title", ""),
                "email": f"{info['name']}@stanch-sandbox.example",
            },
        }

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        uid = str(params.get("user") or "")
        if uid not in self.users:
            raise _SlackError("user_not_found")
        return {"user": self._user(uid)}

    def _usergroups_list(self, params: dict[str, Any]) -> dict[str, Any]:
        include_users = str(params.get("include_users", "")).lower() in ("1", "true")
        groups = []
        for gid, g in self.usergroups.items():
            entry: dict[str, Any] = {
                "id": gid,
                "team_id": TEAM_ID,
                "handle": g["handle"],
                "name": g["name"],
                "user_count": len(g["users"]),
            }
            if include_users:
                entry["users"] = list(g["users"])
            groups.append(entry)
        return {"usergroups": groups}

    def _usergroups_users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        gid = str(params.get("usergroup") or "")
        if gid not in self.usergroups:
            raise _SlackError("no_such_subteam")
        return {"users": list(self.usergroups[gid]["users"])}

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        ref = params.get("channel")
        if not isinstance(ref, str) or ref not in self.channels:
            raise _SlackError("channel_not_found")
        return {
            "channel": {
                "id": ref,
                "name": self.channels[ref],
                "is_channel": True,
                "is_member": True,
                "is_archived": False,
            }
        }


    def _conversations_list(self, params: dict[str, Any]) -> dict[str, Any]:
        chans = [
            {"id": cid, "name": name, "is_channel": True, "is_member": True, "is_archived": False}
            for cid, name in sorted(self.channels.items())
        ]
        return {"channels": chans, "response_metadata": {"next_cursor": ""}}

    def _page(self, msgs: list[_Message], params: dict[str, Any], *, newest_first: bool) -> dict[str, Any]:
        """One page of messages as Slack pages them (``limit``, ``cursor``, ``oldest``/``latest``)."""
        with_meta = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
        oldest = float(params.get("oldest") or 0)
        latest = float(params.get("latest") or 0) or float("inf")
        msgs = [m for m in msgs if oldest <= float(m.ts) <= latest]
        msgs.sort(key=lambda m: float(m.ts), reverse=newest_first)
        try:
            limit = max(1, min(int(params.get("limit") or 100), 1000))
            start = int(str(params.get("cursor") or "0").removeprefix("next_ts:") or 0)
        except ValueError:
            raise _SlackError("invalid_cursor") from None
        page = msgs[start : start + limit]
        more = start + limit < len(msgs)
        return {
            "messages": [m.as_dict(metadata=with_meta) for m in page],
            "has_more": more,
            "response_metadata": {"next_cursor": f"next_ts:{start + limit}" if more else ""},
        }

    def _conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        ref = params.get("channel")
        if not isinstance(ref, str) or ref not in self.channels:
            raise _SlackError("channel_not_found")
        # like Slack: top-level messages only (thread replies live in conversations.replies)
        msgs = [m for m in self._messages.values() if m.channel == ref and not m.thread_ts]
        return self._page(msgs, params, newest_first=True)

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        ref = params.get("channel")
        if not isinstance(ref, str) or ref not in self.channels:
            raise _SlackError("channel_not_found")
        ts = str(params.get("ts") or "")
        parent = self._messages.get((ref, ts))
        if parent is None:
            raise _SlackError("thread_not_found")
        root = parent.thread_ts or parent.ts
        msgs = [m for m in self._messages.values() if m.channel == ref and (m.ts == root or m.thread_ts == root)]
        return self._page(msgs, params, newest_first=False)


def _slack_method(environ: dict[str, Any]) -> tuple[str | None, str | None]:
    """(service, operation) of a stand-in request for kill points: ("slack", "chat.postMessage")."""
    path = str(environ.get("PATH_INFO", ""))
    return ("slack", path[len("/api/") :]) if path.startswith("/api/") else (None, None)


class _Invalid(str):
    """A form field that should have been JSON but was not."""


def _validate_blocks(blocks: Any) -> None:
    if not isinstance(blocks, list) or not all(isinstance(b, dict) and "type" in b for b in blocks):
        raise _SlackError("invalid_blocks_format")
    if len(blocks) > MAX_BLOCKS:
        raise _SlackError(
            "invalid_blocks", errors=[f"no more than {MAX_BLOCKS} items allowed [json-pointer:/blocks]"]
        )
    errors: list[str] = []
    for i, block in enumerate(blocks):
        btype = block["type"]
        if btype == "section":
            text = block.get("text")
            fields = block.get("fields")
            if text is None and not fields:
                errors.append(f"must provide text or fields [json-pointer:/blocks/{i}]")
            if isinstance(text, dict) and len(str(text.get("text", ""))) > MAX_SECTION_TEXT:
                errors.append(
                    f"must be less than {MAX_SECTION_TEXT + 1} characters "
                    f"[json-pointer:/blocks/{i}/text/text]"
                )
            if fields is not None:
                if len(fields) > MAX_SECTION_FIELDS:
                    errors.append(
                        f"no more than {MAX_SECTION_FIELDS} items allowed [json-pointer:/blocks/{i}/fields]"
                    )
                for j, f in enumerate(fields):
                    if len(str(f.get("text", ""))) > MAX_FIELD_TEXT:
                        errors.append(
                            f"must be less than {MAX_FIELD_TEXT + 1} characters "
                            f"[json-pointer:/blocks/{i}/fields/{j}/text]"
                        )
        elif btype == "header":
            text = block.get("text") or {}
            if text.get("type") != "plain_text":
                errors.append(f"must be plain_text [json-pointer:/blocks/{i}/text/type]")
            if len(str(text.get("text", ""))) > MAX_HEADER_TEXT:
                errors.append(
                    f"must be less than {MAX_HEADER_TEXT + 1} characters [json-pointer:/blocks/{i}/text/text]"
                )
        elif btype == "context":
            elements = block.get("elements") or []
            if not elements or len(elements) > MAX_CONTEXT_ELEMENTS:
                errors.append(
                    f"must have 1-{MAX_CONTEXT_ELEMENTS} elements [json-pointer:/blocks/{i}/elements]"
                )
    if errors:
        raise _SlackError("invalid_blocks", errors=errors)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _json(body: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers or {}, mimetype="application/json")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the local Slack Web API stand-in.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    args = parser.parse_args(argv)
    standin = SlackStandIn(args.token, port=args.port).start()
    print(f"STANCH_SLACK_BASE_URL={standin.api_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        standin.stop()


if __name__ == "__main__":
    main()
