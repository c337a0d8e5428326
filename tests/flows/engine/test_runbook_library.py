"""The runbook library: every runbook in runbooks/ validates clean and has a section in
docs/runbooks.md naming all its inputs and steps; every one has a golden plan and an e2e test."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.engine.spec import validate_file

ROOT = Path(__file__).resolve().parents[3]
RUNBOOKS = sorted((ROOT / "runbooks").glob("*.yaml"))
CATALOGUE = (ROOT / "docs" / "runbooks.md").read_text(encoding="utf-8")


def _section(name: str) -> str:
    head = f"\n## `{name}`\n"
    assert head in CATALOGUE, f"docs/runbooks.md has no section for {name}"
    return CATALOGUE.split(head, 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize("path", RUNBOOKS, ids=[p.stem for p in RUNBOOKS])
def test_runbook_is_clean_and_catalogued(path: Path) -> None:
    assert [d for d in validate_file(path) if d.severity == "error"] == []
    assert "TODO(language)" not in path.read_text(encoding="utf-8"), f"{path.name}: a TODO(language) is left"
    rb = yaml.safe_load(path.read_text(encoding="utf-8"))
    section = _section(rb["name"])
    for name in rb.get("inputs", {}):
        assert f"`{name}`" in section, f"{rb['name']}: input {name} missing from docs/runbooks.md"
    for step in rb["steps"]:
        assert f"`{step['id']}`" in section, f"{rb['name']}: step {step['id']} missing from docs/runbooks.md"
    snake = rb["name"].replace("-", "_")
    assert (ROOT / "tests" / "e2e" / "golden" / f"plan_{snake}.txt").is_file(), f"{rb['name']}: no golden plan"
    assert (ROOT / "tests" / "e2e" / f"test_{snake}.py").is_file(), f"{rb['name']}: no end-to-end test"
