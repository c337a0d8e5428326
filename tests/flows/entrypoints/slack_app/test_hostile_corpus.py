"""The hostile Slack corpus (tests/hostile/slack/*.json) replayed over real HTTP against the Bolt
app: each case gets the status it documents, never a 500, and nothing starts — no launch, no
incident folder, nothing posted to an attacker's host, no file content in any reply."""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_harness import SlackHarness, sign

from flows.entrypoints.slack.launchers import RecordingLauncher
from integrations.sandbox.slack_standin import SlackStandIn

CORPUS = Path(__file__).resolve().parents[3] / "hostile" / "slack"
CASES = sorted(CORPUS.glob("*.json"))
SECRET_VALUE = "hunter2-aws-wJalrXUtnFEMI"


@pytest.fixture(scope="module")
def attacker() -> Iterator[SlackStandIn]:
    """A live server on another origin: anything stanch posts to it is recorded."""
    with SlackStandIn() as srv:
        yield srv


def _files(h: SlackHarness) -> dict[str, str]:
    root = h.store.parent.parent
    outside = root / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secrets.yaml").write_text(f"db:\n  password: {SECRET_VALUE}\nservices: {SECRET_VALUE}\n")
    (outside / "secrets.json").write_text(json.dumps({"id": SECRET_VALUE, "password": SECRET_VALUE}))
    inputs = root / "inputs"
    if not (inputs / "escape.yaml").exists():
        (inputs / "escape.yaml").symlink_to(outside / "secrets.yaml")
    hostname = Path("/etc/hostname").read_text().strip() if Path("/etc/hostname").exists() else "no-hostname"
    return {"secrets_yaml": str(outside / "secrets.yaml"), "secrets_json": str(outside / "secrets.json"),
            "hostname": hostname or "no-hostname"}


def _fill(value: str, subst: dict[str, str]) -> str:
    for k, v in subst.items():
        value = value.replace("{" + k + "}", v)
    return value


def _body(case: dict[str, Any], h: SlackHarness, subst: dict[str, str], url: str) -> bytes:
    if case["kind"] == "raw":
        if "body_hex" in case:
            return bytes.fromhex(case["body_hex"])
        if "body_repeat" in case:
            head, unit, n = case["body_repeat"]
            return (head + unit * n).encode()
        return _fill(case["body"], subst).encode()
    if case["kind"] == "click":
        payload = {"type": "block_actions", "user": {"id": "U0LEAD1"}, "team": {"id": "T0STANCH01"},
                   "channel": {"id": "C0INCIDENT"}, "trigger_id": f"{secrets.randbelow(10**9)}.x",
                   "response_url": url,
                   "actions": [{"action_id": "stanch_approve", "block_id": "approval", "type": "button",
                                "value": json.dumps({"incident": "INC-X", "step": "approve"}),
                                "action_ts": f"{time.time():.6f}"}]}
        return urlencode({"payload": json.dumps(payload)}).encode()
    text = _fill(case.get("text", ""), subst) + "a" * case.get("text_pad", 0) + case.get("text_suffix", "")
    text += " x" * case.get("text_words", 0)
    body = h.command_body(text, response_url=url)
    if url == "":
        body = "&".join(p for p in body.split("&") if not p.startswith("response_url="))
    return body.encode()


def _headers(case: dict[str, Any], body: bytes) -> dict[str, str]:
    mode = case["sign"]
    text = body.decode("utf-8", "replace")
    now = int(time.time())
    if mode == "none":
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    elif mode == "wrong-secret":
        headers = sign(text, secret="not-our-secret")
    elif mode == "other-body":
        headers = sign(text + "&x=1")
    elif mode == "malformed":
        headers = {**sign(text), "X-Slack-Signature": "v1=abc"}
    elif mode in ("stale", "future"):
        headers = sign(text, ts=now - 400 if mode == "stale" else now + 400)
    else:  # valid: HMAC of the exact bytes
        import hashlib
        import hmac

        from slack_harness import SECRET

        sig = hmac.new(SECRET.encode(), f"v0:{now}:".encode() + body, hashlib.sha256).hexdigest()
        headers = {"X-Slack-Request-Timestamp": str(now), "X-Slack-Signature": "v0=" + sig,
                   "Content-Type": "application/x-www-form-urlencoded"}
    if "content_type" in case:
        headers["Content-Type"] = case["content_type"]
    return {**headers, **case.get("headers", {})}


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_hostile_request(path: Path, offline: SlackHarness, attacker: SlackStandIn) -> None:
    case = json.loads(path.read_text())
    subst = {**_files(offline), "attacker": attacker.url}
    url = _fill(case["response_url"], subst) if "response_url" in case else offline.standin.response_url()
    before = len(attacker.responses())
    body = _body(case, offline, subst, url)
    started = time.monotonic()
    resp = offline.http.request("POST", offline.url, body=body, headers=_headers(case, body), timeout=20)
    elapsed = time.monotonic() - started
    assert resp.status == case["status"], (case["why"], resp.status, resp.data[:300])
    assert elapsed < case.get("max_seconds", 5.0), elapsed
    ack = resp.data.decode("utf-8", "replace")
    assert "Traceback" not in ack
    if "ack_contains" in case:
        assert case["ack_contains"] in ack, ack[:500]
    replies = [ack]
    if "respond_contains" in case:
        got = offline.wait_response(url)
        replies += [r.get("text", "") for r in got]
        assert case["respond_contains"] in replies[-1], replies[-1]
    time.sleep(0.3)  # post-ack work would have happened by now
    for needle in case.get("never_contains", []):
        needle = _fill(needle, subst)
        assert all(needle not in r for r in replies), (needle, replies)
    assert SECRET_VALUE not in json.dumps(offline.standin.responses())
    assert isinstance(offline.launcher, RecordingLauncher) and offline.launcher.requests == []
    assert offline.incidents() == []
    assert len(attacker.responses()) == before, "stanch posted to the attacker's host"
    if case["status"] >= 400:
        assert offline.standin.responses() == [] and offline.standin.calls("chat.postMessage") == []


def test_oversize_declared_body_is_refused_without_reading_it(offline: SlackHarness) -> None:
    """A signed-looking request announcing 10 MB gets 413 as soon as its headers arrive, and the
    connection is closed: the server never waits for (or buffers) the body."""
    host, port = offline.url.split("//", 1)[1].split("/", 1)[0].split(":")
    headers = sign("x")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        head = ["POST /slack/events HTTP/1.1", f"Host: {host}", "Content-Length: 10000000",
                *(f"{k}: {v}" for k, v in headers.items()), "", ""]
        sock.sendall("\r\n".join(head).encode())
        started = time.monotonic()
        data = sock.recv(4096)
        assert time.monotonic() - started < 2.0
    assert data.startswith(b"HTTP/1.1 413") or data.startswith(b"HTTP/1.0 413"), data[:100]
    assert b"connection: close" in data.lower()


def test_signed_command_mentioning_payload_is_not_dropped(offline: SlackHarness) -> None:
    """Bolt's own parser returns {} for any form body containing the word "payload"; the gate's
    strict parse is used instead, so such a command still works."""
    resp, _ = offline.command("status payload")
    assert resp.status == 200
    assert "not an incident id" in json.loads(resp.data)["text"] or "no incident" in json.loads(resp.data)["text"]


def test_bad_channel_id_is_not_echoed_into_the_announcement(offline: SlackHarness) -> None:
    url = offline.standin.response_url()
    body = offline.command_body("run compromised-dependency advisory=MAL-2026-2307", response_url=url)
    body = body.replace("channel_id=C0INCIDENT", "channel_id=" + "C0%3E%7C%3C%21channel%3E")
    assert offline.post(body, sign(body)).status == 200
    out = offline.wait_response(url)[0]
    assert out["response_type"] == "in_channel"
    assert "<!channel>" not in out["text"] and "C0>" not in out["text"]
    assert isinstance(offline.launcher, RecordingLauncher)
    assert offline.launcher.requests[0].slack_channel is None  # the thread goes to the runbook's channel


def test_inventory_inside_the_input_dirs_is_passed_as_its_resolved_path(offline: SlackHarness) -> None:
    inputs = offline.store.parent.parent / "inputs"
    (inputs / "fleet").mkdir(exist_ok=True)
    (inputs / "fleet" / "inventory.yaml").write_text("services: []\n")
    _resp, url = offline.command("run compromised-dependency advisory=MAL-2026-2307 inventory=fleet/inventory.yaml")
    assert offline.wait_response(url)[0]["response_type"] == "in_channel"
    assert isinstance(offline.launcher, RecordingLauncher)
    got = offline.launcher.requests[0].inputs["inventory"]
    assert got == str((inputs / "fleet" / "inventory.yaml").resolve()) and os.path.isabs(got)
