"""Runbook expressions: sandboxed Jinja2 with strict undefined, type-preserving.

Owns: the one Jinja environment used for runbook expressions (compiler, runtime, checks),
``render_value`` / ``is_truthy`` (run time), ``references`` / ``syntax_error``
(static analysis), and the names that are in scope (``SCOPE_ROOTS`` and friends).

Rules:
- A string that is exactly one ``{{ expr }}`` (surrounding whitespace allowed) evaluates
  natively and keeps its type (a list stays a list). Any other string containing ``{{``/``{%``
  renders to ``str``. Other values pass through; dicts and lists are rendered recursively.
- ``if:``, ``for_each:`` and ``item_name:`` are templates too (``"{{ inputs.notify }}"``); a
  bare string is not evaluated (the checks reject it, RB116).
- Every failure (undefined name, syntax, sandbox violation, runtime error) is an
  ``ExpressionError`` naming the expression; going past a limit of ``flows.engine.limits`` (time,
  size, nesting) is an ``ExpressionLimitError``.
- Attribute access on a mapping prefers the key: ``steps.fan.output.items`` is the output's
  ``items`` key, not ``dict.items``.

Must not touch: Prefect, boto3, Slack, the action registry, the file system.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, nodes
from jinja2.exceptions import TemplateSyntaxError
from jinja2.runtime import Undefined

from flows.engine.limits import LIMITS, BoundedSandbox, LimitExceeded, budget
from integrations.errors import StanchError

__all__ = [
    "COMPENSATION_ROOTS",
    "INCIDENT_FIELDS",
    "RUNBOOK_FIELDS",
    "RUN_FIELDS",
    "SCOPE_ROOTS",
    "STEP_FIELDS",
    "ExpressionError",
    "ExpressionLimitError",
    "constant_limit_error",
    "environment",
    "is_template",
    "is_truthy",
    "references",
    "render_value",
    "syntax_error",
]

#: Variables in scope for every step expression (``item`` only inside a ``for_each`` step).
SCOPE_ROOTS: frozenset[str] = frozenset({"inputs", "steps", "item", "incident", "runbook"})
#: Extra variables in a compensation's ``with:``: the step's output and its rendered params.
COMPENSATION_ROOTS: frozenset[str] = frozenset({"output", "params"})
#: What ``steps.<id>`` exposes (``status``: succeeded, failed, skipped, ...).
STEP_FIELDS: frozenset[str] = frozenset({"output", "status"})
#: What ``incident`` exposes.
INCIDENT_FIELDS: frozenset[str] = frozenset({"id", "drill", "started_at"})
#: What ``run`` exposes, in ``when: always`` / ``when: on_failure`` steps only.
RUN_FIELDS: frozenset[str] = frozenset({"outcome", "failed_steps", "declined_steps"})
#: What ``runbook`` exposes.
RUNBOOK_FIELDS: frozenset[str] = frozenset({"name", "title", "severity", "owner"})

_FALSE_STRINGS = frozenset({"", "false", "0", "no", "off", "none", "null"})
_TEMPLATE_MARKERS = ("{{", "{%", "{#")
_SINGLE_EXPR = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)

Path = tuple[str | int, ...]


class ExpressionError(StanchError):
    """A runbook expression failed to parse or evaluate."""

    code = "EX100"

    def __init__(self, message: str, expression: str = "") -> None:
        super().__init__(message)
        self.expression = expression


class ExpressionLimitError(ExpressionError):
    """An expression went past a documented limit (time, size, nesting); see ``flows.engine.limits``."""

    code = "EX200"


def _build_environment() -> BoundedSandbox:
    # Built-ins already cover join, length, default, map(attribute=...), select*, first, ...;
    # BoundedSandbox replaces tojson with plain JSON (Jinja's HTML-escapes <, >, & and ').
    return BoundedSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


_ENV = _build_environment()


def environment() -> BoundedSandbox:
    """The shared sandboxed environment (reports may reuse it to get the same filters)."""
    return _ENV


def is_template(value: Any) -> bool:
    """True when ``value`` (or anything inside it) is a string with Jinja markup."""
    if isinstance(value, str):
        return any(m in value for m in _TEMPLATE_MARKERS)
    if isinstance(value, Mapping):
        return any(is_template(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(is_template(v) for v in value)
    return False


@lru_cache(maxsize=2048)
def _single_expression(source: str) -> str | None:
    """The inner expression if ``source`` is exactly one ``{{ expr }}``, else None."""
    m = _SINGLE_EXPR.match(source)
    if m is None:
        return None
    inner = m.group("expr")
    try:
        tree = _ENV.parse("{{" + inner + "}}")
    except TemplateSyntaxError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    out = tree.body[0].nodes
    if len(out) != 1 or isinstance(out[0], nodes.TemplateData):
        return None
    return inner.strip().removeprefix("-").removesuffix("-").strip()


@lru_cache(maxsize=2048)
def _compiled_expression(expr: str) -> Callable[..., Any]:
    return _ENV.compile_expression(expr, undefined_to_none=False)


@lru_cache(maxsize=2048)
def _compiled_template(source: str) -> Template:
    return _ENV.from_string(source)


def _shown(source: str, limit: int = 120) -> str:
    text = source.strip()
    return repr(text) if len(text) <= limit else repr(text[: limit - 1] + "…") + f" ({len(text):,} characters)"


def _fail(source: str, exc: BaseException) -> ExpressionError:
    if isinstance(exc, LimitExceeded):
        detail = exc.message if isinstance(exc, TemplateSyntaxError) and exc.message else str(exc)
        return ExpressionLimitError(f"expression {_shown(source)}: {detail}", source)
    if isinstance(exc, TemplateSyntaxError):
        detail = f"syntax error: {exc.message}"
    elif isinstance(exc, RecursionError | MemoryError):
        detail = f"{type(exc).__name__}: the expression is too large or nests too deeply"
    else:
        detail = str(exc) or type(exc).__name__
    return ExpressionError(f"expression {_shown(source)}: {detail}", source)


def _render_string(source: str, context: Mapping[str, Any]) -> Any:
    if not any(m in source for m in _TEMPLATE_MARKERS):
        return source
    try:
        with budget("expression", LIMITS.expression_seconds):
            expr = _single_expression(source)
            if expr is not None:
                result = _compiled_expression(expr)(**context)
                if isinstance(result, Undefined):
                    result._fail_with_undefined_error()
                return result
            out = _compiled_template(source).render(**context)
            if len(out) > LIMITS.string_chars:
                raise LimitExceeded(f"result exceeds the limit of {LIMITS.string_chars:,} characters")
            return out
    except ExpressionError:
        raise
    except Exception as exc:  # undefined, syntax, sandbox security, limits, TypeError in the expression...
        raise _fail(source, exc) from exc


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render templates in ``value`` (recursively), keeping native types for ``{{ expr }}``."""
    if isinstance(value, str):
        return _render_string(value, context)
    if isinstance(value, Mapping):
        return {k: render_value(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, context) for v in value]
    if isinstance(value, tuple):
        return tuple(render_value(v, context) for v in value)
    return value


def is_truthy(value: Any) -> bool:
    """Truth of an ``if:`` result. Strings like "false", "no", "0", "" are false."""
    if isinstance(value, Undefined) or value is None:
        return False
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_STRINGS
    return bool(value)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if any(m in value for m in _TEMPLATE_MARKERS) else []
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def syntax_error(value: Any) -> str | None:
    """The first template syntax error in ``value`` (recursively), as ``line N: message``."""
    for source in _strings(value):
        try:
            _ENV.parse(source)
        except TemplateSyntaxError as exc:
            return f"line {exc.lineno}: {exc.message}"
    return None


_FREE_NAMES = frozenset({"range", "lipsum", "dict", "namespace", "cycler", "joiner", "true", "false", "none"})
_WORK = (nodes.BinExpr, nodes.Call, nodes.Filter, nodes.Concat, nodes.UnaryExpr)


def _constant_roots(node: nodes.Node) -> list[nodes.Node]:
    """The largest sub-expressions that read no variable and do some work (``10 ** (10 ** 10)``,
    ``'a' * 10**9``, ``range(10**12) | list``): they can be evaluated before the run."""
    roots: list[nodes.Node] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, _WORK) and all(x.name in _FREE_NAMES and x.ctx == "load" for x in n.find_all(nodes.Name)):
            roots.append(n)
            continue
        stack.extend(n.iter_child_nodes())
    return roots


@lru_cache(maxsize=2048)
def constant_limit_error(source: str) -> str | None:
    """Why a constant part of ``source`` goes past a limit (``{{ 10 ** (10 ** 10) }}``), or None.
    Lets ``validate`` report, located, what would otherwise only fail at run time."""
    try:
        tree = _ENV.parse(source)
    except TemplateSyntaxError:
        return None
    for root in _constant_roots(tree):
        try:
            with budget("expression", LIMITS.expression_seconds):
                _ENV.from_string(nodes.Template([nodes.Output([root])])).render()
        except LimitExceeded as exc:
            return str(exc)
        except Exception:
            continue
    return None


def _chain(node: nodes.Node) -> Path | None:
    """``a.b['c'][0]`` -> ('a', 'b', 'c', 0); None when the chain is not constant."""
    if isinstance(node, nodes.Name):
        return (node.name,)
    if isinstance(node, nodes.Getattr):
        base = _chain(node.node)
        return None if base is None else (*base, node.attr)
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        key = node.arg.value
        if isinstance(key, str | int) and not isinstance(key, bool):
            base = _chain(node.node)
            return None if base is None else (*base, key)
    return None


def _collect(node: nodes.Node, found: set[Path], local: set[str]) -> None:
    if isinstance(node, nodes.Name) and node.ctx in ("store", "param"):
        local.add(node.name)
        return
    path = _chain(node)
    if path is not None:
        if not (isinstance(node, nodes.Name) and node.ctx != "load"):
            found.add(path)
        return
    for child in node.iter_child_nodes():
        _collect(child, found, local)


def template_references(source: str) -> set[Path]:
    """Variable paths referenced by one template string (raises TemplateSyntaxError)."""
    found: set[Path] = set()
    local: set[str] = set()
    tree = _ENV.parse(source)
    _collect(tree, found, local)
    if any(isinstance(n, nodes.For) for n in tree.find_all(nodes.For)):
        local.add("loop")
    return {p for p in found if p[0] not in local and p[0] not in _ENV.globals}


def references(value: Any) -> set[tuple[str | int, ...]]:
    """Variable paths referenced anywhere in ``value`` (longest constant attribute chains).

    ``{{ steps.scope.output.affected }}`` -> ``{('steps', 'scope', 'output', 'affected')}``;
    ``steps[x].output`` -> ``{('steps',), ('x',)}``. Loop/set variables and Jinja globals are
    left out. Strings with syntax errors contribute nothing (see ``syntax_error``).
    """
    found: set[Path] = set()
    for source in _strings(value):
        try:
            found |= template_references(source)
        except TemplateSyntaxError:
            continue
    return found
