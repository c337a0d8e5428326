"""flows.entrypoints.slack.files: which inputs name files, and where a Slack-given value may point."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.engine.compiler import compile_plan
from flows.engine.spec import load_runbook
from flows.entrypoints.slack.files import confine, confine_inputs, file_inputs
from integrations.base import default_registry
from integrations.errors import InputError

FLAGSHIP = Path(__file__).resolve().parents[4] / "runbooks" / "compromised-dependency.yaml"


def test_flagship_inputs_that_name_files() -> None:
    registry = default_registry()
    loaded = load_runbook(FLAGSHIP, registry)
    plan = compile_plan(loaded.runbook, loaded.path, registry)
    assert file_inputs(plan, registry) == {"advisory": "path-or-id", "inventory": "path"}


def test_confinement(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    (allowed / "sub").mkdir(parents=True)
    (allowed / "sub" / "inv.yaml").write_text("services: []\n")
    outside = tmp_path / "outside.yaml"
    outside.write_text("x: 1\n")
    (allowed / "link-dir").symlink_to(tmp_path)  # a folder symlink leading out
    inside = str((allowed / "sub" / "inv.yaml").resolve())
    assert confine("inventory", "sub/inv.yaml", "path", [allowed]) == inside
    assert confine("inventory", inside, "path", [allowed]) == inside
    assert confine("inventory", "sub/../sub/inv.yaml", "path", [allowed]) == inside
    assert confine("advisory", "MAL-2026-2307", "path-or-id", [allowed]) == "MAL-2026-2307"
    assert confine("inventory", "", "path", []) == ""
    for bad in ("link-dir/outside.yaml", str(outside), "../outside.yaml", "sub", "missing.yaml", "a\x00b"):
        with pytest.raises(InputError):
            confine("inventory", bad, "path", [allowed])
    with pytest.raises(InputError, match="no STANCH_SLACK_INPUT_DIRS"):
        confine("inventory", "sub/inv.yaml", "path", [])
    registry = default_registry()
    loaded = load_runbook(FLAGSHIP, registry)
    plan = compile_plan(loaded.runbook, loaded.path, registry)
    with pytest.raises(InputError) as err:
        confine_inputs(plan, registry, {"advisory": str(outside), "inventory": "/etc/hostname"}, [allowed])
    assert "'advisory'" in str(err.value) and "'inventory'" in str(err.value)
