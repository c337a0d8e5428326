"""docs/actions.md is generated from the registry; it must not drift."""

from __future__ import annotations

from pathlib import Path

from flows.engine.catalogue import actions_markdown
from integrations.base import default_registry

DOC = Path(__file__).resolve().parents[3] / "docs" / "actions.md"


def test_actions_doc_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == actions_markdown(default_registry()), (
        "docs/actions.md is stale: run `make docs` (stanch actions --markdown > docs/actions.md)")


def test_every_action_is_documented_and_typed() -> None:
    reg = default_registry()
    for spec in reg.specs():
        assert spec.summary, spec.name
        assert spec.params.model_config.get("extra") == "forbid", spec.name
        assert spec.result.model_config.get("extra") == "forbid", spec.name
        if spec.compensation:
            assert spec.compensation in reg, f"{spec.name} compensates with unknown {spec.compensation}"
