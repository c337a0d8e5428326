"""Cheap checks of the drill front door and inject plumbing (no sandbox process, no Prefect): the
injector against the sandbox's real fault injector (in front of a stub) and Slack stand-in."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3
import yaml
from typer.testing import CliRunner
from werkzeug.serving import make_server

from flows.drills import contract
from flows.drills.injects import Injector, _call
from flows.drills.scenario import AwsFault, KillAndResume, LateDiscovery, SlackOutage
from flows.entrypoints.cli import app
from integrations.errors import ConfigurationError
from integrations.sandbox.faults import FaultInjector
from integrations.sandbox.slack_standin import SlackStandIn


def test_malformed_scenario_is_rejected_before_anything_starts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntitle: y\nrunbook: compromised-dependency\ninjects:\n  - {kind: meteor}\n")
    result = CliRunner().invoke(app, ["drill", "run", str(bad), "--store", str(tmp_path / "store")])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "bad.yaml" in result.output
    assert not (tmp_path / "store").exists()


def test_unknown_scenario_name_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["drill", "run", "no-such-drill"])
    assert result.exit_code == 2 and "no-such-drill" in result.output


@pytest.mark.parametrize("command", ["run", "schedule", "schedules", "unschedule", "history", "report"])
def test_help_keeps_every_placeholder(command: str) -> None:
    """The CLI renders help as Markdown: a bare ``<store>`` is an HTML tag to it and vanishes.
    Every ``<placeholder>`` in a drill command's help must reach the screen."""
    import re

    import typer

    from flows.entrypoints.drill_cli import drill_app

    group = typer.main.get_command(drill_app)
    cmd = group.commands[command]  # type: ignore[attr-defined]
    texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
    wanted = {m for t in texts for m in re.findall(r"<[^<>\s]+>", t)}
    shown = CliRunner().invoke(app, ["drill", command, "--help"], env={"COLUMNS": "200"}).output
    for placeholder in wanted:
        assert placeholder in shown, f"{placeholder} lost from `stanch drill {command} --help`:\n{shown}"
    if command == "run":
        assert "<store>/.drills/INC-…" in shown
    if command == "schedule":
        assert "runbooks/drills/<name>.yaml" in shown


def test_injects_never_leave_loopback() -> None:
    with pytest.raises(ConfigurationError, match="non-loopback"):
        _call("POST", "http://10.0.0.1:5000/_fault", {})
    scenario = contract.load_scenario(Path(__file__).parents[3] / "runbooks" / "drills" / "acm-access-denied.yaml")
    injector = Injector(list(scenario.injects), "http://127.0.0.1:1", None)
    assert injector.records[0].description == ("AccessDenied on acm:ImportCertificate in account "
                                               "222222222222 (every call)")


@pytest.fixture
def fault_server() -> Iterator[tuple[str, FaultInjector]]:
    """The sandbox's real fault injector (its /_fault control API) in front of a stub AWS that
    answers 200: what the Injector arms is read back from it."""
    injector = FaultInjector(lambda environ, start_response: (start_response("200 OK", []), [b"{}"])[1])
    server = make_server("127.0.0.1", 0, injector, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", injector
    finally:
        server.shutdown()


def test_step_triggers_windows_and_fault_shapes(tmp_path: Path, fault_server: tuple[str, FaultInjector]) -> None:
    """``at_step`` (and ``on: {step_started}``) fire when that step starts, not on the first
    tick; a Slack outage opens ``from`` after its trigger and closes after ``for``; a latency-only
    fault and a 5xx become the sandbox rules they describe."""
    url, injector = fault_server
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump({"services": [{"name": "desktop-app"}, {"name": "legacy-desktop"}]}))
    now = [100.0]
    injects = [
        KillAndResume(kind="kill_and_resume", at_step="publish-update"),
        LateDiscovery(kind="late_discovery", at_step="revoke-ci-keys", service="legacy-desktop"),
        SlackOutage.model_validate({"kind": "slack_outage", "on": {"step_started": "announce"}, "from": "2s",
                                    "for": "3s"}),
        AwsFault(kind="aws_fault", service="iam", operation="*", error=None, latency_ms=500, count=2),
        AwsFault(kind="aws_fault", service="s3", operation="PutObject", error="5xx", count=1),
    ]
    run = subprocess.Popen(["sleep", "30"])
    names = lambda: [s["name"] for s in yaml.safe_load(inventory.read_text())["services"]]  # noqa: E731
    with SlackStandIn() as slack:
        def slack_up() -> bool:
            return int(urllib3.request("POST", f"{slack.api_url}auth.test",
                                       headers={"Authorization": f"Bearer {slack.token}"}).status) == 200

        inj = Injector(injects, url, slack.url, clock=lambda: now[0], inventory=inventory)
        try:
            inj.prepare()
            assert names() == ["desktop-app"]  # held back until revoke-ci-keys starts
            assert inj.tick({"scope"}, run.pid) is False and run.poll() is None and names() == ["desktop-app"]
            assert {(r.service, r.action, r.status, r.code, r.delay_ms, r.count) for r in injector.rules()} == {
                ("iam", "*", None, "Throttling", 500, 2), ("s3", "PutObject", 503, "ServiceUnavailable", None, 1)}
            assert inj.tick({"scope", "revoke-ci-keys"}, run.pid) is False
            assert names() == ["desktop-app", "legacy-desktop"] and run.poll() is None
            inj.tick({"scope", "revoke-ci-keys", "announce"}, run.pid)  # the window opens at 102
            now[0] = 101.5
            inj.tick(set(), run.pid)
            assert slack_up()
            now[0] = 102.0
            inj.tick(set(), run.pid)
            assert not slack_up()
            now[0] = 105.5
            inj.tick(set(), run.pid)
            assert slack_up()
            assert inj.tick({"publish-update"}, run.pid) is True
            assert run.wait(5) == -signal.SIGKILL
        finally:
            if run.poll() is None:
                run.kill()
        records = inj.finish(run_succeeded=True)
    assert [(r.kind, r.fired) for r in records] == [("kill_and_resume", 1), ("late_discovery", 1),
                                                    ("slack_outage", 1), ("aws_fault", 0), ("aws_fault", 0)]
    assert [r.description for r in records[2:]] == [
        "Slack down from 2s for 3s when announce starts", "+500 ms latency on iam:* (2 call(s))",
        "5xx on s3:PutObject (1 call(s))"]
    assert injector.rules() == []  # finish removed the faults: after-probes see a healthy sandbox


def test_inputs_are_filled_for_a_runbook_without_an_inventory_input(tmp_path: Path) -> None:
    """api-key-exposure declares no ``inventory``: its inputs are still filled in from the drill's
    sandbox ({fleet.*}, {sandbox.inventory}) and a list still goes to `stanch run` as JSON."""
    from flows.drills.runner import run_inputs
    from flows.engine.compiler import parse_input_pairs

    inputs = {"account": "{fleet.tenant_account}", "tenants": ["t-01", "t-02"], "notes": "{sandbox.inventory}",
              "sender": "security@platform.example"}
    inventory = tmp_path / "inventory.yaml"
    pairs = run_inputs(inputs, inventory=inventory, fleet={"tenant_account": "111111111111"}, accepts_inventory=False)
    assert parse_input_pairs(pairs[1::2]) == {"account": "111111111111", "tenants": '["t-01", "t-02"]',
                                              "notes": str(inventory), "sender": "security@platform.example"}
    with_inventory = run_inputs({}, inventory=inventory, fleet={}, accepts_inventory=True)
    assert with_inventory == ["-i", f"inventory={inventory}"]


def test_offsets_count_from_run_started_and_an_outage_fires_per_refused_call(
        fault_server: tuple[str, FaultInjector]) -> None:
    """``at:`` counts from the run's ``run.started``, not from when the injector was made (the
    run starts seconds later); a Slack outage's ``fired`` is the Slack calls it refused: a
    1-second window nobody called into did not fire. ``at: 0s`` is at once (slack-down)."""
    url, injector = fault_server
    now = [100.0]
    injects = [SlackOutage.model_validate({"kind": "slack_outage", "for": "1s", "at": "1s"}),
               AwsFault(kind="aws_fault", service="iam", operation="*", error="Throttling", at="2s"),
               SlackOutage.model_validate({"kind": "slack_outage", "at": "5s", "for": "1s"})]
    with SlackStandIn() as slack:
        def slack_up() -> bool:
            return int(urllib3.request("POST", f"{slack.api_url}auth.test",
                                       headers={"Authorization": f"Bearer {slack.token}"}).status) == 200

        inj = Injector(injects, url, slack.url, clock=lambda: now[0])
        inj.prepare()
        now[0] = 103.0  # 3 s of sandbox start and process start: the run has not started yet
        inj.tick(set(), None)
        assert slack_up() and injector.rules() == []
        inj.tick(set(), None, run_started=True)  # run.started at 103
        assert slack_up() and injector.rules() == []
        now[0] = 104.0
        inj.tick(set(), None)
        assert slack_up() is False  # the first window (104-105) is open: this call is refused
        now[0] = 105.0
        inj.tick(set(), None)
        assert slack_up() and [r.code for r in injector.rules()] == ["Throttling"]  # closed; iam due at 105
        now[0] = 108.0
        inj.tick(set(), None)  # the second window opens (108-109) and nobody calls Slack in it
        now[0] = 109.5
        inj.tick(set(), None)
        records = inj.finish(run_succeeded=True)
    assert [(r.kind, r.fired, r.survived) for r in records] == [
        ("slack_outage", 1, 1), ("aws_fault", 0, 0), ("slack_outage", 0, 0)]
    from flows.drills.scorecard import inject_result

    assert inject_result(records[2].fired, records[2].survived) == "did not fire"
    at_once = Injector([SlackOutage.model_validate({"kind": "slack_outage", "at": "0s", "for": "run"})], url, None,
                       clock=lambda: now[0])
    assert at_once._due(0, at_once.injects[0], set(), {})  # before run.started


def test_summary_says_not_contained_and_formats_targets() -> None:
    """A drill that never contained shows ``not contained`` (never ``Nones``); targets are
    formatted like `drill history` (300.0 s: 5m00s, 0.5 s: 500ms)."""
    from rich.console import Console

    from flows.entrypoints.drill_cli import _summary

    card = {"scenario": "acm-access-denied", "passed": False, "score": 59, "probes": [],
            "time_to_contain_s": None, "target_time_to_contain_s": 300.0,
            "time_to_first_decision_s": 1.25, "target_time_to_first_decision_s": 0.5}
    console = Console(width=200, record=True)
    console.print(_summary(card))
    text = console.export_text()
    assert "not contained (target 5m00s)" in text and "None" not in text, text
    assert "1.25s (target 500ms)" in text, text
