"""`stanch plan`: ordered steps, resolved parameters, fan-out and the exact AWS operations —
from a dry run against the sandbox's current state, with no side effect."""

from __future__ import annotations

import os
import re
from pathlib import Path

from typer.testing import CliRunner

from flows.entrypoints.cli import app
from flows.entrypoints.demo import DEMO_INPUTS
from integrations.sandbox import Sandbox, observe

GOLDEN = Path(__file__).parent / "golden" / "plan_compromised_dependency.txt"


def _normalise(text: str, inventory: str) -> str:
    text = text.replace(inventory, "<inventory>")
    text = re.sub(r"AKIA[A-Z0-9]{16}", "AKIA<key-id>", text)
    return re.sub(r"certificate/[0-9a-f-]{36}", "certificate/<uuid>", text)


def test_plan_golden_and_side_effect_free(sandbox: Sandbox) -> None:
    assert sandbox.state is not None and sandbox.fleet is not None
    inventory = str(sandbox.state.inventory_path)
    args = ["plan", "compromised-dependency"]
    for k, v in {**DEMO_INPUTS, "inventory": inventory}.items():
        args += ["--input", f"{k}={v}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    got = _normalise(result.output, inventory)
    if os.environ.get("STANCH_UPDATE_GOLDEN"):
        GOLDEN.write_text(got)
    assert got == GOLDEN.read_text()
    # nothing changed: keys still Active, no Slack message, no email
    desktop = sandbox.fleet.services["desktop-app"]
    assert set(observe.access_key_statuses(sandbox.url, desktop.account, desktop.ci_user).values()) == {"Active"}
    assert sandbox.slack.calls("chat.postMessage") == []  # type: ignore[union-attr]
    assert observe.sent_emails(sandbox.url) == []


def test_plan_with_bad_input_exits_2_and_says_why() -> None:
    result = CliRunner().invoke(app, ["plan", "compromised-dependency", "--input", "advisry=MAL-2026-2307"])
    assert result.exit_code == 2
    assert "unknown input 'advisry'" in result.output and "missing required input 'advisory'" in result.output
