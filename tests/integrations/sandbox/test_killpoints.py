"""Kill points (test-only): off unless enabled; ``before`` kills the process and the call never
happens; ``after`` lets the server finish the call, then kills the process before it answers;
``answered`` kills it once the answer has been written."""

from __future__ import annotations

import io
import json
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3

from integrations.sandbox.faults import identify
from integrations.sandbox.killpoints import ENV_FLAG, KillPoints, add_killpoint, clear_killpoints, list_killpoints
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


def test_answered_kills_once_the_answer_is_out(standin: SlackStandIn, victim: subprocess.Popen[bytes],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_FLAG, "1")
    add_killpoint(standin.url, pid=victim.pid, operation="chat.postMessage", when="answered")
    resp = _post(standin, "three")
    assert json.loads(resp.data)["ok"]  # the caller got the whole answer …
    assert victim.wait(5) == -signal.SIGKILL  # … and the process is killed right after
    assert [m["text"] for m in standin.messages()] == ["three"]
    _post(standin, "four")  # each rule fires once
    assert [m["text"] for m in standin.messages()] == ["three", "four"]


AUTH = "AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=x"


def _wsgi(app: KillPoints, path: str, body: bytes, **environ: str) -> tuple[list[str], Any]:
    seen: list[str] = []
    out = app({"PATH_INFO": path, "REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(len(body)),
               "wsgi.input": io.BytesIO(body), **environ}, lambda status, headers: seen.append(status))
    return seen, out


@pytest.mark.parametrize("when", ["after", "answered"])
def test_after_and_answered_apply_the_aws_call_then_kill_once(
        victim: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch, when: str) -> None:
    monkeypatch.setenv(ENV_FLAG, "1")
    applied: list[str] = []

    def backend(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        applied.append(environ["wsgi.input"].read().decode())
        start_response("200 OK", [])
        return [b"ok"]

    app = KillPoints(backend, identify=lambda environ: identify(environ)[:2])
    rule = {"pid": victim.pid, "operation": "UpdateAccessKey", "when": when, "service": "iam"}
    status, _ = _wsgi(app, "/_killpoint", json.dumps(rule).encode())
    assert status == ["200 OK"]

    def call() -> Any:
        return _wsgi(app, "/", b"Action=UpdateAccessKey&Status=Inactive", HTTP_AUTHORIZATION=AUTH,
                     CONTENT_TYPE="application/x-www-form-urlencoded")[1]

    body = call()
    assert applied and "Status=Inactive" in applied[0]  # the change reached the backend
    if when == "answered":
        assert victim.poll() is None  # alive until the answer has been written
        assert b"".join(body) == b"ok"
        body.close()
    assert victim.wait(10) == -signal.SIGKILL
    call()  # fired once: a second call is left alone
    assert len(applied) == 2
