"""flows.engine.targets: a resumed run or a rollback targets exactly what the run targeted."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from flows.engine.targets import RunTarget, endpoint_answers, reattach
from integrations.errors import ConfigurationError
from integrations.settings import StanchSettings


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_target_of_settings_names_endpoints_not_secrets() -> None:
    settings = StanchSettings(aws_endpoint_url="http://127.0.0.1:5999", slack_base_url="http://127.0.0.1:6000/api/",
                              slack_token="xoxb-not-recorded", aws_region="eu-west-1", assume_role_name="R")
    target = RunTarget.of(settings, drill=False)
    assert target.sandbox and not target.drill and target.region == "eu-west-1"
    assert "xoxb" not in target.model_dump_json()
    assert not RunTarget.of(StanchSettings(), drill=False).sandbox  # default endpoints: real AWS


def test_sandbox_target_that_does_not_answer_is_refused() -> None:
    url = f"http://127.0.0.1:{_dead_port()}"
    meta = {"target": RunTarget(aws_endpoint_url=url, slack_base_url=None, sandbox=True, drill=False,
                                region="us-east-1", assume_role_name="StanchIncidentResponder").model_dump()}
    with pytest.raises(ConfigurationError, match=r"does not answer.*never real AWS"):
        reattach(meta, None, None)
    # another sandbox running now is not the one this incident ran against
    with pytest.raises(ConfigurationError, match=re.escape("a sandbox now runs at http://127.0.0.1:1")):
        reattach(meta, {"STANCH_AWS_ENDPOINT_URL": "http://127.0.0.1:1"}, "http://127.0.0.1:1")


def test_sandbox_target_reattaches_with_the_running_sandbox_environment() -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        url = f"http://127.0.0.1:{srv.getsockname()[1]}"
        assert endpoint_answers(url)
        meta = {"target": {"aws_endpoint_url": url, "slack_base_url": None, "sandbox": True, "drill": True,
                           "region": "us-east-1", "assume_role_name": "StanchIncidentResponder"}}
        target, env = reattach(meta, {"AWS_ACCESS_KEY_ID": "sandbox", "STANCH_AWS_ENDPOINT_URL": url}, url)
        assert target.drill and env["AWS_ACCESS_KEY_ID"] == "sandbox"
        assert env["STANCH_AWS_ENDPOINT_URL"] == url and env["STANCH_SLACK_BASE_URL"] is None


def test_live_target_unsets_a_stray_endpoint() -> None:
    meta = {"target": {"aws_endpoint_url": None, "slack_base_url": None, "sandbox": False, "drill": False,
                       "region": "us-east-1", "assume_role_name": "StanchIncidentResponder"}}
    _, env = reattach(meta, None, None)
    assert env["STANCH_AWS_ENDPOINT_URL"] is None  # the caller removes it: the run went to real AWS


HOSTILE = Path(__file__).parents[2] / "hostile" / "incidents"


@pytest.mark.parametrize("path", sorted(HOSTILE.glob("*.json")), ids=lambda p: p.stem)
def test_hostile_recorded_targets_are_refused(path: Path) -> None:
    meta = json.loads(path.read_text())
    with pytest.raises(ConfigurationError):
        reattach(meta, None, None)


def test_a_take_over_acts_on_the_recorded_target_not_on_its_own_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker taking over a dead worker's incident resumes it with its own environment: the
    resumed run must still act on what incident.json recorded (the audit saw a take-over report
    'already deleted' keys in a fresh sandbox the incident never touched), and be refused when the
    recorded sandbox is gone — never fall through to whatever the worker points at."""
    from flows.engine.resume import PriorProgress
    from flows.engine.runtime import _prepare

    runbook = tmp_path / "note.yaml"
    runbook.write_text("name: note\ntitle: A note\nsteps:\n  - id: say\n    action: core.note\n"
                       "    with: {message: hi}\n", encoding="utf-8")
    recorded = socket.socket()  # the sandbox the incident ran against, still up
    recorded.bind(("127.0.0.1", 0))
    recorded.listen(4)
    url = f"http://127.0.0.1:{recorded.getsockname()[1]}"
    store = tmp_path / "incidents"
    (store / "INC-TAKE").mkdir(parents=True)
    target = RunTarget(aws_endpoint_url=url, slack_base_url=None, sandbox=True, drill=True, region="eu-west-1",
                       assume_role_name="Responder")
    (store / "INC-TAKE" / "incident.json").write_text(json.dumps({"id": "INC-TAKE", "target": target.model_dump()}))
    elsewhere = f"http://127.0.0.1:{_dead_port()}"  # the taking-over worker's own sandbox
    monkeypatch.setenv("STANCH_AWS_ENDPOINT_URL", elsewhere)
    monkeypatch.setenv("STANCH_AWS_REGION", "us-east-1")
    monkeypatch.setenv("STANCH_HOME", str(tmp_path / "home"))
    try:
        engine = _prepare(str(runbook), {}, "INC-TAKE", str(store), True, "worker", PriorProgress(runs=1))
        assert (engine.settings.aws_endpoint_url, engine.settings.aws_region,
                engine.settings.assume_role_name) == (url, "eu-west-1", "Responder")
        # a first run (no earlier attempt) takes this process's settings as they are
        fresh = _prepare(str(runbook), {}, "INC-NEW", str(store), True, "worker", PriorProgress())
        assert fresh.settings.aws_endpoint_url == elsewhere
    finally:
        recorded.close()
    # the recorded sandbox is gone: refused, whatever this process points at
    with pytest.raises(ConfigurationError, match=r"does not answer.*never real AWS"):
        _prepare(str(runbook), {}, "INC-TAKE", str(store), True, "worker", PriorProgress(runs=1))
