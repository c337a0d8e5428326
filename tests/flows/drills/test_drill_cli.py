"""Cheap checks of the drill front door and inject plumbing (no sandbox, no Prefect)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.drills import contract
from flows.drills.injects import Injector, _call
from flows.entrypoints.cli import app
from integrations.errors import ConfigurationError


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
