"""Helpers for the Slack app tests over real HTTP: Bolt's WSGI adapter under werkzeug on 127.0.0.1:0, requests
signed like Slack's (v0 HMAC), Web API calls and response_url posts read from the stand-in."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import urllib3
from slack_bolt import App
from werkzeug.serving import make_server

from flows.entrypoints.slack.launchers import RunLauncher
from flows.entrypoints.slack_app import wsgi_app
from integrations.sandbox.slack_standin import SlackStandIn

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
REPO_RUNBOOKS = Path(__file__).resolve().parents[4] / "runbooks"
ALLOWED = '["U0ONCALL", "@security-leads"]'

GATED = """\
name: gated
title: A gated step needs two security leads
slack:
  channel: "#incident"
  allowed_users: [U0ONCALL]
steps:
  - id: prepare
    action: core.note
    with: {message: prepared}
  - id: approve-rotation
    needs: [prepare]
    approval:
      approvers: ["@security-leads"]
      min_approvals: 2
      expires: 60s
      message: Rotate the signing certificate
  - id: rotate
    needs: [approve-rotation]
    action: core.note
    with: {message: rotated}
"""

BROKEN = """\
name: broken
title: Broken
slack: {allowed_users: [U0ONCALL]}
steps:
  - id: one
    action: aws.iam.revok
"""


def sign(body: str, ts: int | None = None, secret: str = SECRET) -> dict[str, str]:
    """What Slack sends: v0 HMAC-SHA256 of ``v0:{ts}:{raw body}``."""
    stamp = str(int(time.time()) if ts is None else ts)
    sig = "v0=" + hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": sig,
            "Content-Type": "application/x-www-form-urlencoded"}


def make_runbooks(dest: Path) -> Path:
    shutil.copytree(REPO_RUNBOOKS, dest)
    main = dest / "compromised-dependency.yaml"
    text = main.read_text()
    text, n = re.subn(r'(?m)^slack:\n  channel: "#incident"\n',
                      f'slack:\n  channel: "#incident"\n  allowed_users: {ALLOWED}\n', text)
    assert n == 1, "flagship runbook's slack: block changed; update the test fixture"
    main.write_text(text)
    (dest / "gated.yaml").write_text(GATED)
    (dest / "broken.yaml").write_text(BROKEN)
    return dest


@dataclass
class SlackHarness:
    app: App
    url: str
    standin: SlackStandIn
    store: Path
    launcher: RunLauncher
    http: urllib3.PoolManager = field(default_factory=lambda: urllib3.PoolManager(retries=False))

    def post(self, body: str, headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
        return self.http.request("POST", self.url, body=body.encode(), headers=headers, timeout=10)

    def command_body(self, text: str, user: str = "U0ONCALL", *, trigger_id: str | None = None,
                     response_url: str | None = None) -> str:
        return urlencode({
            "token": "deprecated", "team_id": "T0STANCH01", "team_domain": "stanch-sandbox",
            "channel_id": "C0INCIDENT", "channel_name": "incident", "user_id": user, "user_name": user.lower(),
            "command": "/stanch", "text": text, "api_app_id": "A0STANCH01",
            "response_url": response_url or self.standin.response_url(),
            "trigger_id": trigger_id or f"{secrets.randbelow(10**12)}.{secrets.token_hex(8)}",
        })

    def command(self, text: str, user: str = "U0ONCALL", **kw: Any) -> tuple[urllib3.BaseHTTPResponse, str]:
        """Signed slash command; returns (HTTP response, its response_url)."""
        url = self.standin.response_url()
        body = self.command_body(text, user, response_url=url, **kw)
        return self.post(body, sign(body)), url

    def click(self, incident: str, step: str, user: str, approve: bool = True) -> tuple[urllib3.BaseHTTPResponse, str]:
        url = self.standin.response_url()
        payload = {
            "type": "block_actions", "api_app_id": "A0STANCH01", "token": "deprecated",
            "team": {"id": "T0STANCH01", "domain": "stanch-sandbox"},
            "user": {"id": user, "username": user.lower(), "team_id": "T0STANCH01"},
            "channel": {"id": "C0INCIDENT", "name": "incident"},
            "container": {"type": "message", "message_ts": "1.000001", "channel_id": "C0INCIDENT"},
            "message": {"type": "message", "ts": "1.000001", "text": "approval", "blocks": []},
            "trigger_id": f"{secrets.randbelow(10**12)}.{secrets.token_hex(8)}",
            "response_url": url,
            "actions": [{"type": "button", "block_id": "approval",
                         "action_id": "stanch_approve" if approve else "stanch_deny",
                         "value": json.dumps({"incident": incident, "step": step}),
                         "text": {"type": "plain_text", "text": "Approve" if approve else "Deny"},
                         "action_ts": f"{time.time():.6f}"}],
        }
        body = urlencode({"payload": json.dumps(payload)})
        return self.post(body, sign(body)), url

    def wait_response(self, response_url: str, count: int = 1, timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [r["body"] for r in self.standin.responses(response_url)]
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"no response_url post after {timeout}s; got {self.standin.responses(response_url)}")

    def incidents(self) -> list[Path]:
        return sorted(p for p in self.store.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if self.store.exists() else []


def serve_app(app: App) -> tuple[str, Callable[[], None]]:
    server = make_server("127.0.0.1", 0, wsgi_app(app), threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="slack-app-test", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    return f"http://127.0.0.1:{server.server_port}/slack/events", stop


