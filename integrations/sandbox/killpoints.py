"""Test-only kill points: SIGKILL a process when a given call reaches a sandbox server.

Owns: ``KillPoint`` (which call, which process, before or after the call is handled or answered),
``KillPoints`` (a WSGI middleware in front of moto — ``MotoServer`` — and of the Slack stand-in)
and the HTTP helpers ``add_killpoint`` / ``list_killpoints`` / ``clear_killpoints``.

Crash tests use it to kill a stanch run *inside* the window between a side effect and its
timeline record, deterministically and without any hook in production action code:

- ``when="before"``: the run is killed as the request arrives; the call is never handled
  (the side effect did not happen, but the run may have recorded that it was about to).
- ``when="after"``: the server handles the request completely (moto applied the change, the
  stand-in stored the message), then kills the run before the answer goes back — the effect
  happened and the run never learned it. Fires only on a successful (< 400) answer.
- ``when="answered"``: as ``after``, but the answer is written to the run first and the run is
  killed right after (50 ms later) — it got the answer but may not have recorded it. Fires only
  on a successful (< 400) answer.

A rule matches a request by ``operation`` (the AWS operation, e.g. ``SendEmail``, or the Slack
method, e.g. ``chat.postMessage``), optionally ``service`` and ``match`` (a substring of the raw
request body — a recipient, a text, a metadata key); ``skip`` lets that many matching requests
through first. Each rule fires once. The server waits (up to 5 s) until the process is gone
before it answers (``answered``: before it closes the connection), so nothing after the window
can run.

Control API: ``POST /_killpoint`` JSON ``{"pid", "operation", "when", "service"?, "match"?,
"skip"?}`` -> ``{"id"}``; ``GET /_killpoint`` -> rules with ``fired``; ``DELETE /_killpoint``.
**Off unless the server's environment has ``STANCH_SANDBOX_KILLPOINTS=1``** (then ``POST`` answers
403): a sandbox someone runs for a demo cannot be told to kill processes. The server only binds
loopback and can only signal processes of its own user. Must not touch: ``flows``, ``prefect``.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import urllib3
from pydantic import BaseModel, ConfigDict, Field

from integrations.sandbox.faults import rewrap_body

__all__ = ["ENV_FLAG", "KillPoint", "KillPoints", "add_killpoint", "clear_killpoints", "list_killpoints"]

ENV_FLAG = "STANCH_SANDBOX_KILLPOINTS"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Identify = Callable[[dict[str, Any]], tuple[str | None, str | None]]


class KillPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    pid: int = Field(gt=1, description="The process to SIGKILL (a run the test started)")
    operation: str = Field(min_length=1, description="AWS operation or Slack method")
    when: Literal["before", "after", "answered"]
    service: str | None = None
    match: str | None = Field(default=None, description="Substring of the raw request body")
    skip: int = Field(default=0, ge=0, description="Matching requests let through before firing")
    seen: int = 0
    fired: bool = False

    def matches(self, service: str | None, operation: str | None, body: str) -> bool:
        if self.fired or operation != self.operation:
            return False
        if self.service and self.service != service:
            return False
        return self.match is None or self.match in body


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def kill_and_wait(pid: int, timeout: float = 5.0) -> None:
    """SIGKILL ``pid`` and wait until it is dead (a zombie counts: it runs no more code)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.01)


class KillPoints:
    """WSGI middleware: answers ``/_killpoint`` and kills a process at a matching request."""

    def __init__(self, app: WSGIApp, *, identify: Identify) -> None:
        self.app = app
        self.identify = identify
        self._rules: list[KillPoint] = []
        self._lock = threading.Lock()

    def rules(self) -> list[KillPoint]:
        with self._lock:
            return [r.model_copy() for r in self._rules]

    def _take(self, when: str, service: str | None, operation: str | None, body: str) -> KillPoint | None:
        with self._lock:
            for rule in self._rules:
                if rule.when != when or not rule.matches(service, operation, body):
                    continue
                rule.seen += 1
                if rule.seen <= rule.skip:
                    continue
                rule.fired = True
                return rule.model_copy()
        return None

    def _pending(self, when: str) -> bool:
        with self._lock:
            return any(not r.fired and r.when == when for r in self._rules)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") == "/_killpoint":
            return self._control(environ, start_response)
        with self._lock:
            armed = any(not r.fired for r in self._rules)
        if not armed:
            return self.app(environ, start_response)
        body = _body(environ)
        service, operation = self.identify(environ)
        rule = self._take("before", service, operation, body) if self._pending("before") else None
        if rule is not None:
            kill_and_wait(rule.pid)
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"killed before the call (stanch sandbox kill point)"]
        if not (self._pending("after") or self._pending("answered")):
            return self.app(environ, start_response)
        captured: dict[str, Any] = {}

        def _capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        chunks = b"".join(self.app(environ, _capture))  # the server handles the call completely
        ok = int(str(captured.get("status", "500")).split()[0]) < 400
        rule = self._take("after", service, operation, body) if ok else None
        if rule is not None:
            kill_and_wait(rule.pid)
        answered = self._take("answered", service, operation, body) if ok and rule is None else None
        start_response(captured.get("status", "500 Internal Server Error"), captured.get("headers", []))
        if answered is not None:
            return _KillWhenAnswered([chunks], answered.pid)
        return [chunks]

    def _control(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        status: str = "200 OK"
        payload: dict[str, Any] = {}
        if method == "POST":
            if os.environ.get(ENV_FLAG) != "1":
                status, payload = "403 Forbidden", {"error": f"kill points are off (set {ENV_FLAG}=1)"}
            else:
                try:
                    rule = KillPoint.model_validate(json.loads(_body(environ) or "{}"))
                    with self._lock:
                        self._rules.append(rule)
                    payload = {"id": rule.id}
                except ValueError as exc:
                    status, payload = "400 Bad Request", {"error": str(exc)}
        elif method == "DELETE":
            with self._lock:
                self._rules.clear()
            payload = {"cleared": "all"}
        else:
            payload = {"rules": [r.model_dump() for r in self.rules()]}
        data = json.dumps(payload).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]


class _KillWhenAnswered:
    """A WSGI body that kills ``pid`` once the server has written it (the server calls ``close()``)."""

    def __init__(self, chunks: list[bytes], pid: int) -> None:
        self._chunks, self._pid = chunks, pid

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)

    def close(self) -> None:
        time.sleep(0.05)  # let the run read the answer it was sent
        kill_and_wait(self._pid)


def _body(environ: dict[str, Any]) -> str:
    """The raw request body as text; the stream is re-wrapped so the app can read it again."""
    return rewrap_body(environ).decode("utf-8", "replace")


_http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=10))


def add_killpoint(
    url: str,
    *,
    pid: int,
    operation: str,
    when: Literal["before", "after", "answered"],
    service: str | None = None,
    match: str | None = None,
    skip: int = 0,
) -> str:
    """Arm a kill point on a sandbox server (moto endpoint or Slack stand-in root URL)."""
    rule = {"pid": pid, "operation": operation, "when": when, "service": service, "match": match, "skip": skip}
    resp = _http.request("POST", f"{url.rstrip('/')}/_killpoint", body=json.dumps(rule).encode(),
                         headers={"Content-Type": "application/json"})
    if resp.status != 200:
        raise ValueError(f"kill point rejected: HTTP {resp.status} {resp.data.decode()}")
    return str(json.loads(resp.data)["id"])


def list_killpoints(url: str) -> list[KillPoint]:
    resp = _http.request("GET", f"{url.rstrip('/')}/_killpoint")
    return [KillPoint.model_validate(r) for r in json.loads(resp.data)["rules"]]


def clear_killpoints(url: str) -> None:
    _http.request("DELETE", f"{url.rstrip('/')}/_killpoint")
