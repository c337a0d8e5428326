"""The fault layer's kill points (tests only): the request reaches the backend (applied), then the
given pid is SIGKILLed before or after the response; refused unless explicitly enabled."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from typing import Any

import pytest

from integrations.sandbox.faults import KILL_RULES_ENV, FaultInjector

AUTH = "AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=x"


def _post_rule(inj: FaultInjector, rule: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    body = json.dumps(rule).encode()
    seen: list[str] = []
    out = inj({"PATH_INFO": "/_fault", "REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(len(body)),
               "wsgi.input": io.BytesIO(body)}, lambda status, headers: seen.append(status))
    return seen[0], json.loads(b"".join(out))


def _call(inj: FaultInjector) -> Any:
    body = b"Action=UpdateAccessKey&Status=Inactive"
    return inj({"PATH_INFO": "/", "REQUEST_METHOD": "POST", "CONTENT_TYPE": "application/x-www-form-urlencoded",
                "CONTENT_LENGTH": str(len(body)), "HTTP_AUTHORIZATION": AUTH, "wsgi.input": io.BytesIO(body)},
               lambda status, headers: None)


@pytest.mark.parametrize("when", ["before_response", "after_response"])
def test_kill_point_applies_the_request_then_kills(monkeypatch: pytest.MonkeyPatch, when: str) -> None:
    monkeypatch.setenv(KILL_RULES_ENV, "1")
    applied: list[str] = []

    def backend(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        applied.append(environ["wsgi.input"].read().decode())
        start_response("200 OK", [])
        return [b"ok"]

    inj = FaultInjector(backend)
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        status, _ = _post_rule(inj, {"action": "UpdateAccessKey", "status": None, "count": 1,
                                     "kill_pid": victim.pid, "kill_when": when})
        assert status == "200 OK"
        body = _call(inj)
        assert applied and "Status=Inactive" in applied[0]  # the change reached the backend
        if when == "after_response":
            assert victim.poll() is None  # alive until the response has been written
            assert b"".join(body) == b"ok"
            body.close()
        assert victim.wait(10) == -9
        _call(inj)  # count=1: a second call is left alone
        assert len(applied) == 2
    finally:
        victim.kill()
        victim.wait()


def test_kill_points_are_refused_unless_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KILL_RULES_ENV, raising=False)
    inj = FaultInjector(lambda e, s: [])
    status, payload = _post_rule(inj, {"action": "*", "status": None, "kill_pid": 999999})
    assert status.startswith("400") and KILL_RULES_ENV in payload["error"]
    monkeypatch.setenv(KILL_RULES_ENV, "1")
    status, payload = _post_rule(inj, {"action": "*", "status": 500, "kill_pid": 999999})
    assert status.startswith("400") and "status null" in payload["error"]
    assert inj.rules() == []
