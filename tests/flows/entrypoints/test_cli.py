"""The CLI says the same thing as the engine, exits 1 for a failed run / invalid runbook and 2 for
bad input or configuration, and changes nothing when it refuses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.entrypoints.cli import app

HERE = Path(__file__).parent / "cli"
runner = CliRunner()


def test_validate_reports_five_mistakes_with_positions_and_exits_1() -> None:
    result = runner.invoke(app, ["validate", str(HERE / "five_mistakes.yaml")])
    assert result.exit_code == 1
    lines = [ln.replace(str(HERE) + os.sep, "") for ln in result.output.splitlines() if "error[" in ln]
    golden = HERE / "golden_five_mistakes.txt"
    if os.environ.get("STANCH_UPDATE_GOLDEN"):
        golden.write_text("\n".join(lines) + "\n")
    assert lines == golden.read_text().splitlines()
    assert len({ln.split("error[")[1][:5] for ln in lines}) == 5  # five different codes


def test_validate_shipped_runbooks_is_clean() -> None:
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 0, result.output


def test_unknown_runbook_name_lists_known_ones() -> None:
    result = runner.invoke(app, ["plan", "compromised-dependecy"])
    assert result.exit_code == 2
    assert "no runbook named 'compromised-dependecy'" in result.output and "compromised-dependency" in result.output


def test_drill_refuses_non_sandbox_endpoints(tmp_path: Path) -> None:
    env = {"STANCH_HOME": str(tmp_path), "STANCH_AWS_ENDPOINT_URL": "https://iam.amazonaws.com"}
    result = runner.invoke(app, ["run", "compromised-dependency", "--drill", "--input", "advisory=MAL-2026-2307"],
                           env=env)
    assert result.exit_code == 2
    assert "refusing to run a drill outside the sandbox" in result.output
    assert not (tmp_path / "incidents").exists()  # nothing was started or written


def test_run_with_bad_input_changes_nothing(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "compromised-dependency", "--input", "advisory"],
                           env={"STANCH_HOME": str(tmp_path)})
    assert result.exit_code == 2 and "key=value" in result.output
    assert not (tmp_path / "incidents").exists()


def test_help_teaches() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("validate", "plan", "run", "resume", "rollback", "approve", "timeline", "sandbox", "scope", "demo"):
        assert cmd in result.output


def test_run_runbook_help_lists_its_inputs_and_runs_nothing(tmp_path: Path) -> None:
    for args in (["run", "compromised-dependency", "--help"], ["run", "--help", "compromised-dependency"],
                 ["inputs", "compromised-dependency"]):
        result = runner.invoke(app, args, env={"COLUMNS": "200", "STANCH_HOME": str(tmp_path)})
        assert result.exit_code == 0, result.output
        out = " ".join(result.output.split())
        assert "Inputs of compromised-dependency" in out
        assert "-i advisory=… string required OSV id" in out
        assert 'app_version=… string default "4.2.1"' in out
    assert not (tmp_path / "incidents").exists()
    plain = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    assert plain.exit_code == 0 and "Inputs of" not in plain.output and "--drill" in plain.output
    missing = runner.invoke(app, ["run"])
    assert missing.exit_code == 2
    unknown = runner.invoke(app, ["run", "no-such-runbook", "--help"])
    assert unknown.exit_code == 2


def test_cli_actor_never_doubles_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """`stanch run` without --initiator in a shell without USER said "Initiated by cli:cli"."""
    import getpass

    from flows.entrypoints.cli import cli_actor

    assert cli_actor("alice") == cli_actor("cli:alice") == cli_actor(" cli:alice ") == "cli:alice"
    monkeypatch.setattr(getpass, "getuser", lambda: "bob")
    assert cli_actor() == cli_actor("") == "cli:bob"

    def nobody() -> str:
        raise OSError("no username")

    monkeypatch.setattr(getpass, "getuser", nobody)
    assert cli_actor() == cli_actor("cli:") == "cli"
