"""runbooks/schema.json is generated from the models and checked in."""

from __future__ import annotations

import json

import jsonschema
from conftest import FIXTURES

from flows.engine.spec.loader import load_yaml
from flows.engine.spec.schema import SCHEMA_PATH, build_schema, main, render_schema


def test_checked_in_schema_is_current() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render_schema(), (
        "runbooks/schema.json is stale: regenerate it with `python -m flows.engine.spec.schema`"
    )
    assert main(["--check"]) == 0


def test_schema_shape() -> None:
    schema = build_schema()
    assert list(schema)[:3] == ["$schema", "$id", "title"]
    jsonschema.Draft202012Validator.check_schema(schema)
    step = schema["$defs"]["Step"]["properties"]
    assert "with" in step and "if" in step
    assert "with_" not in step and "if_" not in step
    assert schema["$defs"]["Step"]["additionalProperties"] is False


def test_good_runbook_validates_against_the_schema() -> None:
    data = load_yaml((FIXTURES / "compromised_dependency.yaml").read_text(), "x").data
    assert list(jsonschema.Draft202012Validator(build_schema()).iter_errors(data)) == []


def test_schema_is_valid_json_with_trailing_newline() -> None:
    text = render_schema()
    assert text.endswith("}\n")
    assert json.loads(text) == build_schema()
