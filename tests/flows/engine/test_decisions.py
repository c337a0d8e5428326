"""Sending a decision over plain HTTP (flows.engine.decisions): which Prefect API it goes to, and
how it rides out what a busy Prefect server answers. The end-to-end path against a real paused
run is in test_approvals.py; here a stand-in server plays the answers a real one gives only under
load or in a narrow window (503 while SQLite is locked, REJECT before the pause saved its schema)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from flows.engine import decisions
from flows.engine.decisions import PrefectApi, configured_api, decision_api, store_dir, submit_decision
from flows.engine.incident import Incident
from integrations.errors import ConfigurationError, InputError
from integrations.settings import StanchSettings


@pytest.mark.parametrize("env", [{}, {"STANCH_HOME": "/h"}, {"STANCH_STORE": "/s", "STANCH_HOME": "/h"},
                                 {"STANCH_STORE": "postgresql://db/x", "STANCH_HOME": "/h"}])
def test_store_dir_is_the_settings_rule_without_pydantic_settings(env: dict[str, str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STANCH_STORE", "STANCH_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert store_dir(env) == StanchSettings().store_dir


def test_the_configured_api_comes_from_the_environment_else_the_active_profile(tmp_path: Path) -> None:
    (tmp_path / "profiles.toml").write_text(
        'active = "team"\n[profiles.team]\nPREFECT_API_URL = "http://prefect:4200/api"\n'
        'PREFECT_API_KEY = "pnu_x"\n[profiles.other]\nPREFECT_API_URL = "http://other/api"\n')
    home = {"PREFECT_HOME": str(tmp_path)}
    # each setting: the environment first, then the profile (as Prefect's own settings)
    assert configured_api({**home, "PREFECT_API_URL": "http://env/api"}) == PrefectApi(
        "http://env/api", {"Authorization": "Bearer pnu_x"})
    team = configured_api(home)
    assert team is not None and team.url == "http://prefect:4200/api"
    assert team.headers == {"Authorization": "Bearer pnu_x"}
    other = configured_api({**home, "PREFECT_PROFILE": "other"})
    assert other is not None and other.url == "http://other/api"
    basic = configured_api({"PREFECT_HOME": str(tmp_path / "none"), "PREFECT_API_URL": "http://x/api",
                            "PREFECT_API_AUTH_STRING": "admin:pw", "PREFECT_API_KEY": "k"})
    assert basic is not None and basic.headers == {"Authorization": "Basic YWRtaW46cHc="}  # auth string wins
    assert configured_api({"PREFECT_HOME": str(tmp_path / "none")}) is None
    # without one, the address the run recorded; with neither, say what to set
    none = {"PREFECT_HOME": str(tmp_path / "none")}
    assert decision_api({"prefect_api_url": "http://127.0.0.1:1/api"}, none).url == "http://127.0.0.1:1/api"
    with pytest.raises(ConfigurationError, match="set PREFECT_API_URL"):
        decision_api({}, none)


class _Prefect(BaseHTTPRequestHandler):
    """Answers POST /api/flow_runs/filter and /resume from a script of (status, body) per path."""

    script: dict[str, list[tuple[int, Any]]] = {}
    seen: list[tuple[str, dict[str, Any], str | None]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        kind = self.path.rsplit("/", 1)[-1]
        self.seen.append((kind, body, self.headers.get("Authorization")))
        status, answer = self.script[kind].pop(0) if len(self.script[kind]) > 1 else self.script[kind][0]
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def prefect_standin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Prefect)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    _Prefect.seen = []
    yield f"http://127.0.0.1:{server.server_port}/api"
    server.shutdown()
    server.server_close()


def _waiting(store: Path, incident: str, api_url: str) -> None:
    inc = Incident(store, incident)
    inc.write_meta({"id": incident, "prefect_api_url": api_url})
    inc.timeline.append("approval.requested", step="gate", data={"approvers": ["U0LEAD1"]})


def test_a_busy_server_and_a_pause_still_being_saved_are_waited_out(
        tmp_path: Path, prefect_standin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decisions, "POLL", 0.01)
    monkeypatch.setattr(decisions, "_retry_after", lambda header, attempt: 0.01)
    _waiting(tmp_path, "INC-BUSY", prefect_standin)
    run = {"id": "6f1c4a3e-0000-4000-8000-000000000001", "name": "gated · INC-BUSY"}
    _Prefect.script = {
        "filter": [(503, {"exception_message": "Service Unavailable"}), (200, [run])],
        "resume": [(200, {"status": "REJECT", "state": {"type": "PAUSED"}, "details": {
                        "type": "reject_details", "reason": "Run input schema not found."}}),
                   (201, {"status": "ACCEPT", "state": {"type": "RUNNING"}, "details": {}})]}
    nonce = submit_decision(tmp_path, "INC-BUSY", "gate", "cli:U0LEAD1", True, "ok", wait=5, nonce="n-1",
                            api_of=lambda meta: PrefectApi(meta["prefect_api_url"], {"Authorization": "Bearer k"}))
    assert nonce == "n-1"
    kinds = [k for k, _, _ in _Prefect.seen]
    assert kinds == ["filter", "filter", "resume", "filter", "resume"]
    filter_body = _Prefect.seen[1][1]
    assert filter_body["flow_runs"] == {"tags": {"all_": ["incident:INC-BUSY"]},
                                        "state": {"type": {"any_": ["PAUSED"]}}}
    assert _Prefect.seen[-1][1] == {"run_input": {"approve": True, "approver": "cli:U0LEAD1", "step": "gate",
                                                  "comment": "ok", "nonce": "n-1", "signed_at": 0.0,
                                                  "signature": ""}}
    assert {auth for _, _, auth in _Prefect.seen} == {"Bearer k"}


def test_what_cannot_be_delivered_is_said_plainly(tmp_path: Path, prefect_standin: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decisions, "POLL", 0.01)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    _waiting(tmp_path, "INC-GONE", "http://127.0.0.1:9/api")  # the attempt's temporary server is gone
    with pytest.raises(ConfigurationError, match=r"cannot reach the Prefect API at http://127.0.0.1:9/api "
                                                 r"\(the server the run recorded: is the run still alive"):
        submit_decision(tmp_path, "INC-GONE", "gate", "cli:U0LEAD1", True, wait=0)
    with pytest.raises(InputError, match="cannot decide 'other': it waits for 'gate'"):
        submit_decision(tmp_path, "INC-GONE", "other", "cli:U0LEAD1", True, wait=0)
    _waiting(tmp_path, "INC-NONE", prefect_standin)
    _Prefect.script = {"filter": [(200, [])]}
    with pytest.raises(Exception, match="no paused Prefect run tagged 'incident:INC-NONE'"):
        submit_decision(tmp_path, "INC-NONE", "gate", "cli:U0LEAD1", True, wait=0.05)
    _Prefect.script = {"filter": [(200, [{"id": "r1"}])], "resume": [(200, {
        "status": "REJECT", "state": {"type": "FAILED"}, "details": {"reason": "timed out"}})]}
    with pytest.raises(Exception, match="can no longer be resumed"):
        submit_decision(tmp_path, "INC-NONE", "gate", "cli:U0LEAD1", True, wait=0.05)
