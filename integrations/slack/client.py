"""The one Slack Web API client stanch uses: slack_sdk's ``WebClient`` with bounded retries.

Owns: building a ``WebClient`` from settings (token, base URL -- the stand-in in the sandbox),
the retry policy (429 honouring ``Retry-After`` up to a cap, 500/503, connection errors and
timeouts -- all bounded), drill safety (a drill only talks to a loopback Slack), and mapping every
Slack failure onto the stanch error hierarchy: ``SlackUnavailable`` (transient: outage, rate
limit still in force, network) or ``PermanentActionError`` (auth, scopes, unknown channel,
invalid blocks).

Must not touch: ``flows``, ``prefect``, Block Kit layout (``blocks.py``). Never logs, records or
raises with the token: errors are re-raised ``from None`` because slack_sdk responses keep the
request headers.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import time
from http.client import RemoteDisconnected
from typing import Any
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.jitter import Jitter
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from integrations.errors import (
    ConfigurationError,
    DrillSafetyError,
    PermanentActionError,
    TransientActionError,
)
from integrations.settings import StanchSettings
from integrations.urls import is_loopback

__all__ = ["DEFAULT_BASE_URL", "SlackClient", "SlackUnavailable", "is_loopback_url"]

log = logging.getLogger("stanch.slack")

DEFAULT_BASE_URL = "https://slack.com/api/"

# Slack ``error`` codes that mean "try again later" rather than "fix something".
_TRANSIENT_ERRORS = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "team_added_to_org",
    }
)


class SlackUnavailable(TransientActionError):
    """Slack could not be reached or kept refusing (outage, 5xx, rate limit after retries).

    The engine records this in the timeline and carries on: a Slack outage must never fail or
    block containment. ``retry_after`` is Slack's last ``Retry-After`` hint in seconds, if any.
    """

    code = "AC110"

    def __init__(
        self,
        message: str,
        *,
        operation: str | None = None,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, operation=operation)
        self.retry_after = retry_after
        self.status = status


class BoundedRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """Retry 429s, sleeping ``Retry-After`` (+ <=0.25 s jitter), but only while it is <= ``max_wait``.

    slack_sdk's own handler sleeps ``Retry-After + random()`` whatever the value, which could park a
    worker thread for minutes; beyond ``max_wait`` we give up and raise ``SlackUnavailable``.
    """

    def __init__(self, max_retry_count: int = 3, max_wait: float = 30.0) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait

    @staticmethod
    def retry_after(response: HttpResponse | None) -> float | None:
        if response is None:
            return None
        for key, values in response.headers.items():
            if key.lower() == "retry-after" and values:
                try:
                    return max(0.0, float(values[0]))
                except ValueError:
                    return None
        return None

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        wait = self.retry_after(response)
        return wait is None or wait <= self.max_wait

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        wait = self.retry_after(response)
        duration = (1.0 if wait is None else wait) + random.uniform(0, 0.25)
        log.info("slack %s rate limited; retrying in %.2fs", _method_of(request.url), duration)
        state.next_attempt_requested = True
        time.sleep(duration)
        state.increment_current_attempt()


def _method_of(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


is_loopback_url = is_loopback  # one definition in integrations.urls

class SlackClient:
    """What stanch needs from Slack, with errors already classified.

    Build it with ``SlackClient.from_settings(settings)``; tests may pass any ``WebClient``.
    """

    def __init__(self, web: WebClient, *, default_channel: str = "#incident") -> None:
        self.web = web
        self.default_channel = default_channel
        self._bot_id: str | None = None

    @classmethod
    def from_settings(
        cls,
        settings: StanchSettings,
        *,
        drill: bool = False,
        timeout: int = 10,
        rate_limit_retries: int = 3,
        max_retry_after: float = 30.0,
        server_error_retries: int = 2,
        connection_retries: int = 2,
    ) -> SlackClient:
        if settings.slack_token is None or not settings.slack_token.get_secret_value():
            raise ConfigurationError("STANCH_SLACK_TOKEN is not set: Slack notifications need a bot token")
        base_url = settings.slack_base_url or DEFAULT_BASE_URL
        if not base_url.endswith("/"):
            base_url += "/"
        if drill and not is_loopback_url(base_url):
            raise DrillSafetyError(
                f"drill refused to talk to Slack at {base_url}: drills only use the local stand-in "
                "(set STANCH_SLACK_BASE_URL to the sandbox)"
            )
        web = WebClient(
            token=settings.slack_token.get_secret_value(),
            base_url=base_url,
            timeout=timeout,
            logger=logging.getLogger("stanch.slack.sdk"),
            retry_handlers=retry_handlers(
                rate_limit_retries=rate_limit_retries,
                max_retry_after=max_retry_after,
                server_error_retries=server_error_retries,
                connection_retries=connection_retries,
                backoff=settings.slack_retry_backoff,
            ),
        )
        return cls(web, default_channel=settings.slack_channel)

    # ------------------------------------------------------------------ calls
    def call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        """Call any Web API method; returns the response body or raises a stanch ``ActionError``."""
        try:
            response = (
                self.web.api_call(method, json=kwargs)
                if _json_method(method)
                else self.web.api_call(method, data=kwargs)
            )
        except SlackApiError as err:
            raise _classify(method, err) from None
        except json.JSONDecodeError:
            raise SlackUnavailable(
                f"Slack {method}: the server answered with a non-JSON body", operation=method
            ) from None
        except (URLError, OSError, RemoteDisconnected, SlackClientError) as err:
            raise SlackUnavailable(
                f"Slack {method}: could not reach Slack ({type(err).__name__}: {err})", operation=method
            ) from None
        return dict(response.data) if isinstance(response.data, dict) else {}

    def auth_test(self) -> dict[str, Any]:
        """Who we are (``user_id``, ``team_id``, ``bot_id``); a bad token -> ``PermanentActionError``."""
        return self.call("auth.test")

    def post(
        self,
        channel: str | None,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[str, str]:
        """``chat.postMessage``; returns ``(channel_id, ts)``. ``text`` is the notification fallback.

        ``metadata`` is Slack message metadata (``{"event_type": ..., "event_payload": {...}}``):
        stanch tags what it posts so that after a crash it can find it again (``find_tagged``)."""
        kwargs: dict[str, Any] = {"channel": channel or self.default_channel, "text": text}
        if blocks is not None:
            kwargs["blocks"] = blocks
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        if metadata is not None:
            kwargs["metadata"] = metadata
        body = self.call("chat.postMessage", **kwargs)
        return str(body["channel"]), str(body["ts"])

    def update(
        self,
        channel: str,
        ts: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """``chat.update`` of a message the bot posted (``channel`` must be the id ``post`` returned)."""
        kwargs: dict[str, Any] = {"channel": channel, "ts": ts, "text": text}
        if blocks is not None:
            kwargs["blocks"] = blocks
        if metadata is not None:
            kwargs["metadata"] = metadata
        self.call("chat.update", **kwargs)

    def channel_id(self, channel: str | None) -> str:
        """The id of a channel given by id or name (``#incident``); names via ``conversations.list``."""
        ref = channel or self.default_channel
        if _looks_like_id(ref):
            return ref
        name, cursor = ref.lstrip("#"), None
        for _ in range(_MAX_PAGES):
            body = self.call("conversations.list", limit=200, exclude_archived="true",
                             types="public_channel,private_channel", **({"cursor": cursor} if cursor else {}))
            for ch in body.get("channels", []):
                if ch.get("name") == name:
                    return str(ch["id"])
            cursor = (body.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        raise PermanentActionError(f"Slack channel {ref} not found", operation="conversations.list")

    def find_tagged(
        self,
        channel: str,
        event_type: str,
        *,
        thread_ts: str | None = None,
        oldest: float | None = None,
    ) -> list[dict[str, Any]]:
        """Messages of ``channel`` (or of the thread ``thread_ts``) that stanch tagged with message
        metadata of ``event_type``, oldest first: ``conversations.history`` / ``conversations.replies``
        with ``include_all_metadata``. Reads at most a few pages (newest first), from ``oldest`` on.
        Only messages posted by this bot count (``bot_id`` of ``auth.test``): metadata anyone else
        attached cannot make stanch believe it already posted something.
        Needs the ``channels:history`` (``groups:history``) scope."""
        if self._bot_id is None:
            self._bot_id = str(self.auth_test().get("bot_id") or "")
        method = "conversations.replies" if thread_ts else "conversations.history"
        args: dict[str, Any] = {"channel": self.channel_id(channel), "include_all_metadata": "true", "limit": 200}
        if thread_ts:
            args["ts"] = thread_ts
        if oldest is not None:
            args["oldest"] = f"{max(0.0, oldest):.6f}"
        found: list[dict[str, Any]] = []
        cursor = None
        for _ in range(_MAX_PAGES):
            body = self.call(method, **args, **({"cursor": cursor} if cursor else {}))
            for msg in body.get("messages", []):
                meta = msg.get("metadata") or {}
                if meta.get("event_type") == event_type and self._bot_id and msg.get("bot_id") == self._bot_id:
                    found.append(msg)
            cursor = (body.get("response_metadata") or {}).get("next_cursor")
            if not cursor or not body.get("has_more", True):
                break
        return sorted(found, key=lambda m: float(m.get("ts", 0)))

    def user_info(self, user_id: str) -> dict[str, Any]:
        return dict(self.call("users.info", user=user_id)["user"])

    def usergroup_members(self, usergroup: str) -> list[str]:
        """Member ids of a user group, by id (``S…``) or handle (``security-leads`` / ``@security-leads``)."""
        group_id = usergroup
        if not (usergroup[:1] == "S" and usergroup.isupper() and usergroup.isalnum()):
            handle = usergroup.lstrip("@")
            groups = self.call("usergroups.list").get("usergroups", [])
            matches = [g["id"] for g in groups if g.get("handle") == handle]
            if not matches:
                raise PermanentActionError(
                    f"Slack user group @{handle} does not exist", operation="usergroups.list"
                )
            group_id = matches[0]
        return [str(u) for u in self.call("usergroups.users.list", usergroup=group_id).get("users", [])]


def retry_handlers(
    *,
    rate_limit_retries: int = 3,
    max_retry_after: float = 30.0,
    server_error_retries: int = 2,
    connection_retries: int = 2,
    backoff: float = 0.5,
) -> list[RetryHandler]:
    """The bounded retry policy: network errors/timeouts, 429 (``Retry-After``), 500/503.

    5xx and connection errors wait ``backoff * 2**attempt`` plus up to ``2 * backoff`` jitter
    (``backoff=0.5`` is slack_sdk's own default: +<=1 s jitter); ``STANCH_SLACK_RETRY_BACKOFF``."""
    interval = BackoffRetryIntervalCalculator(backoff_factor=backoff, jitter=_ScaledJitter(2 * backoff))
    return [
        ConnectionErrorRetryHandler(
            max_retry_count=connection_retries,
            interval_calculator=interval,
            error_types=[URLError, ConnectionResetError, RemoteDisconnected, TimeoutError, socket.timeout],
        ),
        BoundedRateLimitRetryHandler(max_retry_count=rate_limit_retries, max_wait=max_retry_after),
        ServerErrorRetryHandler(max_retry_count=server_error_retries, interval_calculator=interval),
    ]


class _ScaledJitter(Jitter):
    """Adds up to ``spread`` seconds (slack_sdk's RandomJitter always adds up to 1 s)."""

    def __init__(self, spread: float) -> None:
        self.spread = spread

    def recalculate(self, duration: float) -> float:
        return duration + random.random() * self.spread


_MAX_PAGES = 10


def _looks_like_id(ref: str) -> bool:
    return ref[:1] in "CGD" and ref.isalnum() and ref.isupper()


def _json_method(method: str) -> bool:
    return method.startswith("chat.")


def _classify(method: str, err: SlackApiError) -> Exception:
    response = err.response
    status = getattr(response, "status_code", None)
    data = response.data if isinstance(getattr(response, "data", None), dict) else {}
    code = str(data.get("error") or f"http_{status}")
    detail = data.get("errors") or data.get("response_metadata", {}).get("messages")
    suffix = f" ({'; '.join(map(str, detail))})" if detail else ""
    if status == 429 or code in _TRANSIENT_ERRORS or (status is not None and status >= 500):
        retry_after = None
        headers = getattr(response, "headers", {}) or {}
        for key, value in headers.items():
            if key.lower() == "retry-after":
                try:
                    retry_after = float(value[0] if isinstance(value, list) else value)
                except (TypeError, ValueError):
                    retry_after = None
        return SlackUnavailable(
            f"Slack {method} unavailable: {code} (HTTP {status}){suffix}",
            operation=method,
            retry_after=retry_after,
            status=status,
        )
    return PermanentActionError(f"Slack {method} failed: {code}{suffix}", operation=method)
