"""flows.expressions: sandboxed, strict, type-preserving runbook expressions."""

from __future__ import annotations

import pytest

from flows.expressions import (
    ExpressionError,
    is_template,
    is_truthy,
    references,
    render_value,
    syntax_error,
)
from integrations.errors import StanchError

CTX = {
    "inputs": {"advisory": "MAL-2026-2307", "count": 3},
    "steps": {
        "scope": {
            "output": {"affected": [{"name": "web", "ci_user": "ci-web"}], "n": 2},
            "status": "succeeded",
        },
        "revoke-ci-keys": {"output": [], "status": "skipped"},
    },
    "incident": {"id": "inc-1", "drill": True, "started_at": "2026-03-31T00:00:00Z"},
    "runbook": {"name": "compromised-dependency", "title": "Compromised"},
    "item": {"account": "123456789012", "ci_user": "ci-web"},
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ steps.scope.output.affected }}", [{"name": "web", "ci_user": "ci-web"}]),
        ("  {{ steps.scope.output.n }}  ", 2),
        ("{{ steps.scope.output }}", {"affected": [{"name": "web", "ci_user": "ci-web"}], "n": 2}),
        ("{{ incident.drill }}", True),
        ("{{ none }}", None),
        ("{{ inputs.count * 2 }}", 6),
        ("{{ steps.scope.output.affected | map(attribute='name') | list }}", ["web"]),
        ("{{ {'a': [1, 2]} }}", {"a": [1, 2]}),
        ("{{ steps['revoke-ci-keys'].status }}", "skipped"),
    ],
)
def test_single_expression_keeps_its_type(template: str, expected: object) -> None:
    assert render_value(template, CTX) == expected


def test_mixed_strings_render_to_str_and_structures_recurse() -> None:
    value = {
        "text": "{{ steps.scope.output.n }} affected by {{ inputs.advisory }}",
        "users": ["{{ item.ci_user }}", 7, None],
        "nested": {"ok": True, "n": "{{ steps.scope.output.n }}"},
        "plain": "no templates here",
    }
    assert render_value(value, CTX) == {
        "text": "2 affected by MAL-2026-2307",
        "users": ["ci-web", 7, None],
        "nested": {"ok": True, "n": 2},
        "plain": "no templates here",
    }


def test_filters() -> None:
    assert render_value("{{ steps.scope.output | tojson }}", CTX) == (
        '{"affected": [{"ci_user": "ci-web", "name": "web"}], "n": 2}'
    )
    assert render_value("{{ '<&>' | tojson }}", CTX) == '"<&>"'  # not HTML-escaped
    assert render_value("{{ ['a', 'b'] | join(', ') }}", CTX) == "a, b"
    assert render_value("{{ steps.scope.output.affected | length }}", CTX) == 1
    assert render_value("{{ inputs.missing | default('x') }}", CTX) == "x"


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{{ nope }}", "'nope' is undefined"),
        ("{{ inputs.missing }}", "missing"),
        ("x {{ inputs.missing }} y", "missing"),
        ("{{ steps.scope.output.nope.deeper }}", "nope"),
        ("{{ 1 + }}", "syntax error"),
        ("{{ ''.__class__.__mro__ }}", "unsafe"),
        ("{{ steps.scope.output.affected.append(1) }}", "unsafe"),
        ("{{ 1 / 0 }}", "division"),
    ],
)
def test_errors_are_expression_errors_naming_the_expression(template: str, fragment: str) -> None:
    with pytest.raises(ExpressionError) as info:
        render_value(template, CTX)
    assert isinstance(info.value, StanchError)
    assert fragment in str(info.value)
    assert template.strip() in str(info.value)


def test_references_follow_attribute_and_constant_item_chains() -> None:
    assert references("{{ steps.scope.output.affected }}") == {("steps", "scope", "output", "affected")}
    assert references({"a": ["{{ inputs.advisory }}", "{{ item.account }}/{{ incident.id }}"]}) == {
        ("inputs", "advisory"),
        ("item", "account"),
        ("incident", "id"),
    }
    assert references("{{ steps['revoke-ci-keys'].output[0].key }}") == {
        ("steps", "revoke-ci-keys", "output", 0, "key")
    }
    assert references("{{ steps[name].output }}") == {("steps",), ("name",)}
    assert references("{{ runbook.title | upper }} {{ x if inputs.flag else none }}") == {
        ("runbook", "title"),
        ("x",),
        ("inputs", "flag"),
    }


def test_references_skip_local_names_and_plain_values() -> None:
    tpl = (
        "{% for u in steps.scope.output.affected %}{{ u.name }}{{ loop.index }}{% endfor %}"
        "{% set z = 1 %}{{ z }}"
    )
    assert references(tpl) == {("steps", "scope", "output", "affected")}
    assert references("no templates") == set()
    assert references(42) == set()
    assert references("{{ broken") == set()


def test_syntax_error() -> None:
    assert syntax_error("{{ inputs.a }}") is None
    assert syntax_error({"a": ["fine", "{% if %}"]}) is not None
    assert syntax_error("{{ a }").startswith("line 1:")


@pytest.mark.parametrize(
    ("value", "truth"),
    [
        (True, True),
        (False, False),
        (None, False),
        ("false", False),
        (" No ", False),
        ("0", False),
        ("", False),
        ("yes", True),
        ("anything", True),
        (0, False),
        (1, True),
        ([], False),
        ([0], True),
    ],
)
def test_is_truthy(value: object, truth: bool) -> None:
    assert is_truthy(value) is truth


def test_is_template() -> None:
    assert is_template({"a": ["x", "{{ y }}"]})
    assert is_template("{% if a %}b{% endif %}")
    assert not is_template({"a": [1, "x"]})
