"""Kill points (test-only): off unless enabled; ``before`` kills the process and the call never
happens; ``after`` lets the server finish the call, then kills the process before it answers."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator

import pytest
import urllib3

from integrations.sandbox.killpoints import ENV_FLAG, add_killpoint, clear_killpoints, list_killpoints
from integrations.sandbox.slack_standin import SlackStandIn


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn() as s:
        yield s


@pytest.fixture
def victim() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(5)


def _post(standin: SlackStandIn, text: str) -> urllib3.BaseHTTPResponse:
    return urllib3.PoolManager().request(
        "POST", standin.api_url + "chat.postMessage", body=json.dumps({"channel": "#incident", "text": text}),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {standin.token}"})


def test_off_unless_enabled(standin: SlackStandIn, victim: subprocess.Popen[bytes],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_FLAG, raising=False)
    with pytest.raises(ValueError, match="403"):
        add_killpoint(standin.url, pid=victim.pid, operation="chat.postMessage", when="before")
    _post(standin, "hello")
    assert victim.poll() is None


def test_before_kills_and_the_call_never_happens(standin: SlackStandIn, victim: subprocess.Popen[bytes],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_FLAG, "1")
    add_killpoint(standin.url, pid=victim.pid, operation="chat.postMessage", when="before", match="second")
    _post(standin, "first")  # does not match: goes through, nobody killed
    assert victim.poll() is None
    resp = _post(standin, "second")
    assert resp.status == 503 and victim.wait(5) == -signal.SIGKILL
    assert [m["text"] for m in standin.messages()] == ["first"]
    assert list_killpoints(standin.url)[0].fired
    clear_killpoints(standin.url)
    assert list_killpoints(standin.url) == []


def test_after_kills_once_the_call_is_done(standin: SlackStandIn, victim: subprocess.Popen[bytes],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_FLAG, "1")
    add_killpoint(standin.url, pid=victim.pid, operation="chat.postMessage", when="after", skip=1)
    _post(standin, "one")  # skipped
    assert victim.poll() is None
    resp = _post(standin, "two")
    assert victim.wait(5) == -signal.SIGKILL
    assert json.loads(resp.data)["ok"] and [m["text"] for m in standin.messages()] == ["one", "two"]
