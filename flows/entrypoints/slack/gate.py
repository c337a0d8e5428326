"""The HTTP front gate of the Slack app: what a request must be before Bolt (or anything that
parses) sees it.

Owns: the order of the checks and their status codes, all decided on the raw request —
1. signature headers missing or malformed, or a timestamp outside the 5-minute replay window:
   **401** (the body is not read);
2. no ``Content-Length`` on a non-chunked request: **411**; a declared or actual body larger than
   ``max_body`` (``STANCH_SLACK_MAX_BODY_BYTES``, default 64 kB): **413** (never read past it; the
   connection is closed);
3. the v0 HMAC-SHA256 of ``v0:{ts}:{raw body}`` does not match: **401**;
4. a signed body that is not UTF-8 form data (``command=…`` or ``payload=<JSON object>``) or a JSON
   object: **400**;
then the request and its parsed body go to ``dispatch``. Anything that escapes ``dispatch`` is a
bare 500 with no traceback in the response (it is logged once). Also ``allowed_response_url``:
whether a Slack-supplied ``response_url`` points at one of the allowed origins.

Must not touch: Bolt, Prefect, Slack clients (``flows.entrypoints.slack_app`` wires the gate in front of Bolt).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger("stanch.slack_gate")

MAX_BODY_BYTES = 64 * 1024
REPLAY_WINDOW = 300  # seconds, as Slack documents and slack_sdk's SignatureVerifier uses
MAX_FORM_FIELDS = 64
SLACK_RESPONSE_ORIGINS = ("https://hooks.slack.com", "https://hooks.slack-gov.com")

Dispatch = Callable[[str, dict[str, Any], dict[str, str]], tuple[int, dict[str, str], bytes]]


class Rejected(Exception):
    """The request is refused with ``status`` before anything parses it."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def check_headers(headers: dict[str, str], now: float) -> tuple[str, str]:
    """(timestamp, signature) of a plausibly signed request, else Rejected(401)."""
    ts = headers.get("x-slack-request-timestamp", "")
    sig = headers.get("x-slack-signature", "")
    if not ts or not sig:
        raise Rejected(401, "unsigned request")
    if not ts.isdigit() or len(ts) > 12 or not sig.startswith("v0=") or len(sig) != 67:
        raise Rejected(401, "malformed signature headers")
    if abs(now - int(ts)) > REPLAY_WINDOW:
        raise Rejected(401, "stale or future timestamp")
    return ts, sig


def check_signature(secret: str, ts: str, sig: str, raw: bytes) -> None:
    expected = "v0=" + hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, sig):
        raise Rejected(401, "bad signature")


def parse_body(raw: bytes, content_type: str) -> tuple[str, dict[str, Any]]:
    """(decoded body, parsed body) of a signed request, or Rejected(400). Strict where Bolt is
    lenient: form data must parse, ``payload`` must be a JSON object."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(400, "body is not UTF-8") from None
    if not text:
        raise Rejected(400, "empty body")
    mime = content_type.split(";", 1)[0].strip().lower()
    try:
        if mime == "application/json" or text.startswith("{"):
            body = json.loads(text)
        else:
            fields = parse_qsl(text, keep_blank_values=True, strict_parsing=True,
                               max_num_fields=MAX_FORM_FIELDS)
            form = dict(fields)
            if len(form) != len(fields):
                raise Rejected(400, "repeated form field")
            body = json.loads(form["payload"]) if "payload" in form else form
    except Rejected:
        raise
    except (ValueError, RecursionError):
        raise Rejected(400, "body is neither form data nor a JSON object") from None
    if not isinstance(body, dict) or not body:
        raise Rejected(400, "body is not an object")
    return text, body


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL without user info, else None."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return None
    if any(c in url for c in "\\\r\n\t "):
        return None
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def allowed_response_url(url: Any, origins: Iterable[str]) -> bool:
    """True when ``url`` is on one of ``origins`` (``scheme://host[:port]``), exactly."""
    if not isinstance(url, str) or not url:
        return False
    got = origin(url)
    return got is not None and any(got == origin(o) for o in origins)


@dataclass
class SlackGate:
    """WSGI app: the checks above, then ``dispatch(raw_body, parsed_body, headers)``."""

    dispatch: Dispatch
    secret: str
    path: str = "/slack/events"
    max_body: int = MAX_BODY_BYTES
    clock: Callable[[], float] = time.time

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        status, headers, body = self.handle(environ)
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
                  405: "Method Not Allowed", 411: "Length Required", 413: "Payload Too Large",
                  500: "Internal Server Error"}.get(status, "Status")
        start_response(f"{status} {reason}", [*headers.items(), ("Content-Length", str(len(body)))])
        return [body]

    def handle(self, environ: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        if environ.get("PATH_INFO", "") != self.path:
            return _plain(404, "Not Found")
        if environ.get("REQUEST_METHOD") != "POST":
            return _plain(405, "Method Not Allowed", close=True)
        headers = _headers(environ)
        try:
            ts, sig = check_headers(headers, self.clock())
            raw = self._read(environ)
            check_signature(self.secret, ts, sig, raw)
            text, body = parse_body(raw, headers.get("content-type", ""))
        except Rejected as exc:
            log.warning("slack: refused a request with %s: %s", exc.status, exc.reason)
            return _plain(exc.status, exc.reason, close=exc.status in (411, 413))
        try:
            return self.dispatch(text, body, headers)
        except Exception:
            log.exception("slack: request handling failed")
            return _plain(500, "internal error")

    def _read(self, environ: dict[str, Any]) -> bytes:
        stream = environ.get("wsgi.input")
        declared = environ.get("CONTENT_LENGTH") or ""
        if declared:
            if not declared.isdigit():
                raise Rejected(400, "bad Content-Length")
            if int(declared) > self.max_body:
                raise Rejected(413, f"body larger than {self.max_body} bytes")
            raw = stream.read(int(declared)) if stream is not None else b""
        elif environ.get("wsgi.input_terminated") and stream is not None:  # chunked
            raw = stream.read(self.max_body + 1)
        else:
            raise Rejected(411, "Content-Length required")
        if len(raw) > self.max_body:
            raise Rejected(413, f"body larger than {self.max_body} bytes")
        return bytes(raw)


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in environ.items():
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            out[key.lower().replace("_", "-")] = str(value)
        elif key.startswith("HTTP_"):
            out[key[5:].lower().replace("_", "-")] = str(value)
    return out


def _plain(status: int, text: str, *, close: bool = False) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    if close:
        headers["Connection"] = "close"
    return status, headers, text.encode()
