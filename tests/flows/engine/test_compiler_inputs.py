"""Inputs from the CLI/Slack are typed, defaulted, and every problem is reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.engine.compiler import compile_plan, parse_input_pairs, resolve_inputs
from flows.engine.spec.models import Runbook
from integrations.base import ActionRegistry
from integrations.core import register
from integrations.errors import InputError


@pytest.fixture
def plan():  # type: ignore[no-untyped-def]
    reg = ActionRegistry()
    register(reg)
    rb = Runbook.model_validate(
        {
            "name": "t",
            "title": "T",
            "inputs": {
                "advisory": {"type": "string"},
                "limit": {"type": "integer", "default": 5},
                "dry": {"type": "boolean", "default": False},
                "envs": {"type": "list", "default": []},
                "mode": {"type": "string", "default": "fast", "choices": ["fast", "slow"]},
            },
            "steps": [{"id": "a", "action": "core.note", "with": {"message": "x"}}],
        }
    )
    return compile_plan(rb, Path("t.yaml"), reg)


def test_values_are_typed_and_defaulted(plan) -> None:  # type: ignore[no-untyped-def]
    got = resolve_inputs(
        plan, parse_input_pairs(["advisory=MAL-2026-2307", "limit=7", "dry=yes", "envs=prod,stage"])
    )
    assert got == {
        "advisory": "MAL-2026-2307",
        "limit": 7,
        "dry": True,
        "envs": ["prod", "stage"],
        "mode": "fast",
    }


def test_all_problems_reported_together(plan) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError) as exc:
        resolve_inputs(plan, {"limit": "many", "mode": "medium", "colour": "red"})
    msg = str(exc.value)
    for part in (
        "unknown input 'colour'",
        "'limit' must be an integer",
        "must be one of fast, slow",
        "missing required input 'advisory'",
    ):
        assert part in msg


def test_malformed_pair_is_an_input_error() -> None:
    with pytest.raises(InputError, match="key=value"):
        parse_input_pairs(["advisory"])
