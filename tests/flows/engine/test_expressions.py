"""flows.engine.expressions: sandboxed, strict, type-preserving runbook expressions."""

from __future__ import annotations

import pytest

from flows.engine.expressions import (
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


# ----- mapping keys before dict methods -----------------------------------------------------------

FAN = {"steps": {"fan": {"output": {"items": {"a": 1, "b": 2}, "keys": ["k"], "succeeded": ["a", "b"]},
                         "status": "succeeded"},
                 "items": {"output": {"n": 7}, "status": "succeeded"}},
       "inputs": {"items": ["x", "y", "z"], "values": "v", "get": 0}}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ steps.fan.output.items | length }}", 2),
        ("{{ steps.fan.output.items.a }}", 1),
        ("{{ steps.fan.output.keys }}", ["k"]),
        ("{{ steps.items.output.n }}", 7),  # a step whose id is `items`
        ("{{ inputs.items | join(',') }}", "x,y,z"),
        ("{{ inputs.values }}", "v"),
        ("{{ inputs.get }}", 0),
        ("{{ steps.fan.output.succeeded | length }}", 2),
        ("{{ steps.fan.output.items['b'] }}", 2),
        ("{% for k in steps.fan.output.items %}{{ k }}{% endfor %}", "ab"),
    ],
)
def test_attribute_access_on_a_mapping_prefers_the_key(template: str, expected: object) -> None:
    assert render_value(template, FAN) == expected


def test_dict_methods_still_work_when_no_key_shadows_them() -> None:
    assert render_value("{{ steps.fan.output.items.keys() | list }}", FAN) == ["a", "b"]
    assert render_value("{{ steps.fan.output.get('missing', 'd') }}", FAN) == "d"


# ----- limits (the hostile corpus in tests/hostile/expressions/ runs each payload in a subprocess) ------

@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ 10**(10**10) }}", "exceeds the limit of 10,000 digits"),
        ("{{ 'a' * 10**9 }}", "exceeds the limit of 1,000,000"),
        ("{{ range(10**6) | list }}", "exceeds the limit of 100,000"),
        ("{{ 'x' | center(10**9) }}", "width 1,000,000,000 exceeds the limit of 10,000"),
        ("{{ '%*d' % (10**9, 1) }}", "exceeds the limit of 10,000"),
        ("{{ '{:>1000000000}'.format(1) }}", "exceeds the limit of 10,000"),
        ("{{ lipsum(10**8) }}", "lipsum() is limited"),
        ("{{ " + "(" * 60 + "1" + ")" * 60 + " }}", "brackets nested 60 deep exceed the limit of 50"),
        ("{{ '" + "a" * 300_000 + "' }}", "source exceeds the limit of 200,000 characters (300,008)"),
        ("{{ " + "9" * 5000 + " }}", "an integer literal exceeds the limit of 4,300 digits"),
        ("{% for a in range(10**5) %}{% for b in range(10**5) %}{% endfor %}{% endfor %}",
         "exceeds the limit of 1,000,000 loop iterations"),
    ],
)
def test_limits_refuse_with_an_expression_limit_error(template: str, message: str) -> None:
    from flows.engine.expressions import ExpressionLimitError

    with pytest.raises(ExpressionLimitError) as err:
        render_value(template, CTX)
    assert message in str(err.value)
    assert isinstance(err.value, ExpressionError) and isinstance(err.value, StanchError)
    assert str(err.value).startswith("expression ")


def test_limits_leave_ordinary_expressions_alone() -> None:
    assert render_value("{{ 2 ** 100 }}", CTX) == 2**100
    assert render_value("{{ 'ab' * 3 }}", CTX) == "ababab"
    assert render_value("{{ [0] * 3 }}", CTX) == [0, 0, 0]
    assert render_value("{{ '%-6s|' % 'ab' }}", CTX) == "ab    |"
    assert render_value("{{ '{:>4}'.format(7) }}", CTX) == "   7"
    assert render_value("{{ 'x' | center(5) }}", CTX) == "  x  "
    assert render_value("{{ range(3) | list }}", CTX) == [0, 1, 2]
    assert render_value("{{ (((1 + 2) * 3)) }}", CTX) == 9
    assert render_value("{% for i in range(300) %}{% for j in range(300) %}{% endfor %}{% endfor %}ok", CTX) == "ok"
    assert render_value("{{ [1, 2] | sum }}", CTX) == 3


def test_constant_folding_no_longer_runs_a_bomb_at_compile_time() -> None:
    from flows.engine.expressions import environment

    # compiling must not evaluate the power (it hung `plan` before any check could run)
    assert environment().compile_expression("10 ** (10 ** 10)") is not None
    assert syntax_error("{{ 10 ** (10 ** 10) }}") is None


def test_deep_nesting_is_a_located_syntax_error_not_recursion() -> None:
    deep = "line one\n{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}"
    assert syntax_error(deep) == "line 2: brackets nested 3000 deep exceed the limit of 50"
    assert syntax_error("{{ " + " + ".join(["1"] * 3000) + " }}") == (
        "line 1: expression nests more than the limit of 200 levels")


@pytest.mark.parametrize(
    ("template", "refused"),
    [
        ("{{ 10 ** (10 ** 10) }}", "exceeds the limit of 10,000 digits"),
        ("{{ 'a' * 10**9 }}", "exceeds the limit of 1,000,000"),
        ("x {{ 'x' | center(10**9) }} y", "width 1,000,000,000 exceeds the limit of 10,000"),
        ("{{ inputs.n ** (10 ** 10) }}", None),  # needs a run-time value: refused at run time
        ("{{ 2 ** 10 }}", None),
        ("{{ [1, 2] | join(',') }}", None),
        ("{{ 1 / 0 }}", None),  # an error, but not a limit: the run reports it
        ("plain", None),
    ],
)
def test_constant_limit_error_finds_bombs_that_need_no_variable(template: str, refused: str | None) -> None:
    from flows.engine.expressions import constant_limit_error

    found = constant_limit_error(template)
    assert (found is None) if refused is None else (found is not None and refused in found)
