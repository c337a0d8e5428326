"""Bounded evaluation of runbook expressions and report templates: time, size, depth.

Owns: ``BoundedSandbox`` (the sandboxed, immutable Jinja2 environment every expression and
template of stanch is evaluated in), the documented limits (``LIMITS``), the per-evaluation
budget (``budget``: wall clock, loop iterations, characters produced), and ``LimitExceeded``.

Why: a sandbox stops *what* a template may touch, not *how much* work it does. Jinja folds
constants at compile time (``{{ 10**(10**10) }}`` hangs before anything runs), ``range`` and
loops multiply, and ``center``/``indent``/``%``/``.format`` widths build gigabyte strings in one
C call that no signal can interrupt. So sizes are checked *before* each such call, every loop
iteration and output chunk counts against a budget, and the wall clock is checked on each of
them. Parsing refuses sources, bracket nesting and syntax trees past the limits first (deep
nesting otherwise ends in ``RecursionError`` in the parser or the code generator).

Also: attribute access on a mapping prefers the key (``output.items`` is the key ``items``,
not the ``dict.items`` method).

Must not touch: Prefect, boto3, Slack, the file system.
"""

from __future__ import annotations

import contextvars
import json
import math
import operator
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import TemplateSyntaxError
from jinja2.filters import FILTERS, make_attrgetter
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter
from jinja2.utils import generate_lorem_ipsum

from integrations.errors import StanchError

__all__ = ["LIMITS", "BoundedSandbox", "LimitExceeded", "Limits", "TemplateTooComplex", "budget"]


@dataclass(frozen=True)
class Limits:
    """What one evaluation may cost (documented in docs/runbook-language.md, "Limits")."""

    source_chars: int = 200_000  # one expression or template source
    nesting: int = 50  # brackets ( [ { open at once inside {{ }} / {% %}
    tree_depth: int = 200  # depth of the parsed syntax tree (a.b.c…, 1+1+1…, not not …)
    string_chars: int = 1_000_000  # any one string an operation builds
    int_digits: int = 10_000  # any one integer an operation builds
    items: int = 100_000  # any one list/range an operation builds
    width: int = 10_000  # a width/precision/indent/fill count in formatting
    iterations: int = 1_000_000  # loop iterations, all loops of one evaluation together
    produced_chars: int = 20_000_000  # characters output or built, one evaluation together
    expression_seconds: float = 2.0  # wall clock for one runbook expression
    template_seconds: float = 5.0  # wall clock for one report / post-mortem rendering
    output_chars: int = 5_000_000  # a rendered report / post-mortem


LIMITS = Limits()
_INT_BITS = math.ceil(LIMITS.int_digits * math.log2(10))


class LimitExceeded(StanchError):
    """An expression or template went past one of the documented limits."""

    code = "EX200"


class TemplateTooComplex(TemplateSyntaxError, LimitExceeded):
    """Refused at parse time (too long, nested too deep, a literal too large). A
    ``TemplateSyntaxError`` too, so every place that reports syntax errors locates it."""

    code = "EX201"


@dataclass
class _Budget:
    seconds: float
    deadline: float = 0.0
    iterations: int = 0
    produced: int = 0
    what: str = "expression"
    nested: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.seconds


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("stanch_eval_budget", default=None)


@contextmanager
def budget(what: str = "expression", seconds: float | None = None) -> Iterator[None]:
    """One evaluation's budget; nested calls share the outer one."""
    if _BUDGET.get() is not None:
        yield
        return
    token = _BUDGET.set(_Budget(seconds if seconds is not None else LIMITS.expression_seconds, what=what))
    try:
        yield
    finally:
        _BUDGET.reset(token)


def _tick(produced: int = 0) -> None:
    b = _BUDGET.get()
    if b is None:
        return
    b.produced += produced
    if b.produced > LIMITS.produced_chars:
        raise LimitExceeded(f"{b.what} produces more than the limit of {LIMITS.produced_chars:,} characters")
    if time.monotonic() > b.deadline:
        raise LimitExceeded(f"{b.what} exceeds the time limit of {b.seconds:g} s")


def _iteration() -> None:
    b = _BUDGET.get()
    if b is None:
        return
    b.iterations += 1
    if b.iterations > LIMITS.iterations:
        raise LimitExceeded(f"{b.what} exceeds the limit of {LIMITS.iterations:,} loop iterations")
    if not b.iterations % 256:
        _tick()


# ----- sizes --------------------------------------------------------------------------------------

def _size(value: Any, limit: int) -> int:
    """Characters ``str(value)`` would take, roughly, stopping as soon as it passes ``limit``.
    Walks containers without building the string (a list aliased 1,000 times is 1,000 lists)."""
    total = 0
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            total += len(v)
        elif isinstance(v, Mapping):
            total += 2 + 4 * len(v)
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list | tuple | set | frozenset):
            total += 2 + 2 * len(v)
            stack.extend(v)
        elif isinstance(v, int) and not isinstance(v, bool):
            total += v.bit_length() // 3 + 1
        else:
            total += 8
        if total > limit:
            return total
    return total


def _check_text_size(value: Any, what: str = "a value") -> int:
    n = _size(value, LIMITS.string_chars)
    if n > LIMITS.string_chars:
        raise LimitExceeded(f"{what} exceeds the limit of {LIMITS.string_chars:,} characters")
    return n


def _check_result(value: Any) -> Any:
    """After an operation: refuse a string/int/list past its limit and count what was built."""
    if isinstance(value, str):
        if len(value) > LIMITS.string_chars:
            raise LimitExceeded(f"a string exceeds the limit of {LIMITS.string_chars:,} characters")
        _tick(len(value))
    elif isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > _INT_BITS:
            raise LimitExceeded(f"a number exceeds the limit of {LIMITS.int_digits:,} digits")
        _tick()
    elif isinstance(value, list | tuple | range | Mapping | set | frozenset):
        if len(value) > LIMITS.items:
            raise LimitExceeded(f"a list exceeds the limit of {LIMITS.items:,} items")
        _tick(len(value) if not isinstance(value, range) else 0)
    else:
        _tick()
    return value


def _check_width(n: Any, what: str = "width") -> None:
    if isinstance(n, int | float) and not isinstance(n, bool) and abs(n) > LIMITS.width:
        raise LimitExceeded(f"{what} {n:,} exceeds the limit of {LIMITS.width:,}")


def _est_len(v: Any) -> int:
    return len(v) if isinstance(v, Sized) else 1


# ----- operators ------------------------------------------------------------------------------------

_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")
_FORMAT_SPEC = re.compile(r"(\d+)?(?:\.(\d+))?[a-zA-Z%]?$")


def _check_percent(fmt: str, args: Any) -> None:
    stars = False
    for m in _PERCENT_SPEC.finditer(fmt):
        for part in m.groups():
            if part == "*":
                stars = True
            elif part:
                _check_width(int(part), "format width")
    values = args if isinstance(args, tuple) else (args,)
    if stars:
        for a in values:
            _check_width(a, "format width")
    _check_text_size(fmt, "a format string")
    total = len(fmt) + sum(_size(a, LIMITS.string_chars) for a in values)
    if total > LIMITS.string_chars:
        raise LimitExceeded(f"a formatted string exceeds the limit of {LIMITS.string_chars:,} characters")


def _check_format_spec(spec: str) -> None:
    spec = spec.replace(",", "").replace("_", "")
    m = _FORMAT_SPEC.search(spec)
    if m:
        for part in m.groups():
            if part:
                if len(part) > 6:
                    raise LimitExceeded(f"a format width exceeds the limit of {LIMITS.width:,}")
                _check_width(int(part), "format width")


def _mul(left: Any, right: Any) -> Any:
    for seq, n in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(n, int) and not isinstance(n, bool):
            size = len(seq) * max(n, 0)
            cap = LIMITS.string_chars if isinstance(seq, str) else LIMITS.items
            if size > cap:
                kind = "string" if isinstance(seq, str) else "list"
                raise LimitExceeded(f"a {kind} of {size:,} {'characters' if kind == 'string' else 'items'} "
                                    f"exceeds the limit of {cap:,}")
    if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > _INT_BITS:
        raise LimitExceeded(f"a number exceeds the limit of {LIMITS.int_digits:,} digits")
    return left * right


def _pow(left: Any, right: Any) -> Any:
    if (isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1
            and (abs(left).bit_length() - 1) * right > _INT_BITS):
            raise LimitExceeded(f"{left} ** {right} exceeds the limit of {LIMITS.int_digits:,} digits")
    return left**right


def _mod(left: Any, right: Any) -> Any:
    if isinstance(left, str):
        _check_percent(left, right)
    return left % right


def _add(left: Any, right: Any) -> Any:
    if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
        cap = LIMITS.string_chars if isinstance(left, str) else LIMITS.items
        if len(left) + len(right) > cap:
            raise LimitExceeded(f"a {'string' if isinstance(left, str) else 'list'} exceeds the limit of {cap:,}")
    return left + right


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "*": _mul, "**": _pow, "%": _mod, "+": _add,
    "-": operator.sub, "/": operator.truediv, "//": operator.floordiv,
}


# ----- string methods and formatting -------------------------------------------------------------------

_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


def _check_str_method(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    self_ = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if isinstance(self_, str):
        if name in _WIDTH_METHODS and args:
            _check_width(args[0])
        elif name == "expandtabs":
            size = args[0] if args else kwargs.get("tabsize", 8)
            _check_width(size, "tab size")
            if isinstance(size, int) and len(self_) * max(size, 1) > LIMITS.string_chars:
                raise LimitExceeded(f"a string exceeds the limit of {LIMITS.string_chars:,} characters")
        elif name == "replace" and len(args) >= 2:
            _check_replace(self_, args[0], args[1])
        elif name == "join" and args:
            _check_join(self_, args[0])


def _check_replace(s: Any, old: Any, new: Any) -> None:
    if isinstance(s, str) and isinstance(old, str) and isinstance(new, str):
        count = len(s) + 1 if not old else s.count(old)
        if len(s) + count * (len(new) - len(old)) > LIMITS.string_chars:
            raise LimitExceeded(f"a string exceeds the limit of {LIMITS.string_chars:,} characters")


def _check_join(sep: Any, items: Any) -> None:
    if isinstance(items, list | tuple):
        n = len(items) * len(str(sep)) + _size(items, LIMITS.string_chars)
        if n > LIMITS.string_chars:
            raise LimitExceeded(f"a joined string exceeds the limit of {LIMITS.string_chars:,} characters")


class _BoundedFormatter(SandboxedFormatter):
    def format_field(self, value: Any, format_spec: str) -> Any:
        _check_format_spec(format_spec)
        _check_text_size(value, "a formatted value")
        return super().format_field(value, format_spec)


# ----- filters and globals ---------------------------------------------------------------------------------

def _checked_filter(f: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(f)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        return _check_result(f(*args, **kwargs))

    return guarded


def _f_center(value: Any, width: int = 80) -> str:
    _check_width(width)
    return FILTERS["center"](value, width)


def _f_indent(s: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    text = str(s)
    pad = len(width) if isinstance(width, str) else width
    _check_width(pad, "indent")
    if isinstance(pad, int) and (text.count("\n") + 1) * pad + len(text) > LIMITS.string_chars:
        raise LimitExceeded(f"an indented string exceeds the limit of {LIMITS.string_chars:,} characters")
    return FILTERS["indent"](s, width, first, blank)


def _f_format(value: Any, *args: Any, **kwargs: Any) -> str:
    if args and kwargs:
        raise TypeError("can't handle positional and keyword arguments at the same time")
    params = kwargs or args
    _check_percent(str(value), params if isinstance(params, tuple) else (params,))
    return str(value) % params


def _f_batch(value: Iterable[Any], linecount: int, fill_with: Any = None) -> Any:
    _check_width(linecount, "batch size")
    return FILTERS["batch"](value, linecount, fill_with)


def _f_slice(value: Any, slices: int, fill_with: Any = None) -> Any:
    _check_width(slices, "slice count")
    return FILTERS["slice"](value, slices, fill_with)


def _f_replace(eval_ctx: Any, s: Any, old: str, new: str, count: int | None = None) -> str:
    _check_replace(str(s), str(old), str(new))
    return FILTERS["replace"](eval_ctx, s, old, new, count)


_f_replace.jinja_pass_arg = FILTERS["replace"].jinja_pass_arg  # type: ignore[attr-defined]


def _f_join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
    items = list(value) if not isinstance(value, list | tuple) else value
    _check_join(d, items)
    return FILTERS["join"](eval_ctx, items, d, attribute)


_f_join.jinja_pass_arg = FILTERS["join"].jinja_pass_arg  # type: ignore[attr-defined]


def _f_wordwrap(environment: Any, s: str, width: int = 79, break_long_words: bool = True,
               wrapstring: str | None = None, break_on_hyphens: bool = True) -> str:
    extra = len(wrapstring or "") * (len(str(s)) // max(int(width), 1) + 1)
    if len(str(s)) + extra > LIMITS.string_chars:
        raise LimitExceeded(f"a wrapped string exceeds the limit of {LIMITS.string_chars:,} characters")
    return FILTERS["wordwrap"](environment, s, width, break_long_words, wrapstring,
                               break_on_hyphens)


_f_wordwrap.jinja_pass_arg = FILTERS["wordwrap"].jinja_pass_arg  # type: ignore[attr-defined]


def _f_sum(environment: Any, iterable: Iterable[Any], attribute: Any = None, start: Any = 0) -> Any:
    total = start
    values = iterable if attribute is None else map(make_attrgetter(environment, attribute), iterable)
    for v in values:
        _iteration()
        total = _check_result(_add(total, v)) if isinstance(total, str | list | tuple) else _check_result(total + v)
    return total


_f_sum.jinja_pass_arg = FILTERS["sum"].jinja_pass_arg  # type: ignore[attr-defined]


def _f_stringify(name: str) -> Callable[..., Any]:
    original = FILTERS[name]

    @wraps(original)
    def stringify(value: Any, *args: Any, **kwargs: Any) -> Any:
        _check_text_size(value)
        return original(value, *args, **kwargs)

    return stringify


def tojson(value: Any, indent: int | None = None, *, sort_keys: bool = True, ensure_ascii: bool = False) -> str:
    """Plain JSON (Jinja's own tojson HTML-escapes <, >, & and '), bounded."""
    _check_width(indent, "indent")
    _check_text_size(value)
    return json.dumps(value, indent=indent, sort_keys=sort_keys, default=str, ensure_ascii=ensure_ascii)


def _bounded_range(*args: int) -> range:
    for a in args:
        if not isinstance(a, int) or isinstance(a, bool):
            raise TypeError(f"range() takes integers, not {type(a).__name__}")
    rng = range(*args)
    if len(rng) > LIMITS.items:
        raise LimitExceeded(f"range() of {len(rng):,} items exceeds the limit of {LIMITS.items:,}")
    return rng


def _bounded_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    if n > 100 or max > 1000 or min > 1000:
        raise LimitExceeded("lipsum() is limited to 100 paragraphs of at most 1,000 words")
    return str(generate_lorem_ipsum(n, html, min, max))


_OVERRIDES: dict[str, Callable[..., Any]] = {
    "center": _f_center, "indent": _f_indent, "format": _f_format, "batch": _f_batch, "slice": _f_slice,
    "replace": _f_replace, "join": _f_join, "tojson": tojson, "wordwrap": _f_wordwrap, "sum": _f_sum,
    "string": _f_stringify("string"), "pprint": _f_stringify("pprint"), "list": _f_stringify("list"),
}


# ----- the environment --------------------------------------------------------------------------------------

_BRACKETS_OPEN = frozenset("([{")
_BRACKETS_CLOSE = frozenset(")]}")
_CODE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)


def _nesting(source: str) -> tuple[int, int]:
    """(deepest bracket nesting inside {{ }} / {% %}, line where it is reached)."""
    deepest, where = 0, 1
    for m in _CODE.finditer(source):
        depth = 0
        for i, ch in enumerate(m.group()[2:-2], start=2):  # inside the {{ }} / {% %} delimiters
            if ch in _BRACKETS_OPEN:
                depth += 1
                if depth > deepest:
                    deepest, where = depth, source.count("\n", 0, m.start() + i) + 1
            elif ch in _BRACKETS_CLOSE and depth:
                depth -= 1
    return deepest, where


def _tree_depth(tree: nodes.Node) -> tuple[int, int]:
    deepest, where = 0, 1
    stack: list[tuple[nodes.Node, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > deepest:
            deepest, where = depth, getattr(node, "lineno", where) or where
            if deepest > LIMITS.tree_depth:
                break
        stack.extend((c, depth + 1) for c in node.iter_child_nodes())
    return deepest, where


def check_source(source: str, name: str | None = None, filename: str | None = None) -> None:
    """Refuse a source that is too long or nests brackets too deep (before the parser sees it)."""
    if len(source) > LIMITS.source_chars:
        raise TemplateTooComplex(
            f"source exceeds the limit of {LIMITS.source_chars:,} characters ({len(source):,})",
            1, name, filename)
    depth, line = _nesting(source)
    if depth > LIMITS.nesting:
        raise TemplateTooComplex(
            f"brackets nested {depth} deep exceed the limit of {LIMITS.nesting}", line, name, filename)


_TOO_DEEP = f"expression nests more than the limit of {LIMITS.tree_depth} levels"


def _literal_message(exc: ValueError) -> str:
    if "integer string conversion" in str(exc):
        return f"an integer literal exceeds the limit of {sys.get_int_max_str_digits():,} digits"
    return f"invalid literal: {exc}"


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """An immutable sandbox whose every evaluation is bounded (see the module docstring)."""

    intercepted_binops = frozenset(_BINOPS)  # also keeps Jinja from folding them at compile time

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name, f in list(self.filters.items()):
            self.filters[name] = _checked_filter(_OVERRIDES.get(name, f))
        self.globals["range"] = _bounded_range
        self.globals["lipsum"] = _bounded_lipsum

    # parsing: refuse size and depth before the recursive-descent parser and code generator run
    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        check_source(source, name, filename)
        try:
            tree = super()._parse(source, name, filename)
        except RecursionError:
            raise TemplateTooComplex(_TOO_DEEP, 1, name, filename) from None
        except ValueError as exc:  # an integer literal of more than 4,300 digits
            raise TemplateTooComplex(_literal_message(exc), 1, name, filename) from None
        depth, line = _tree_depth(tree)
        if depth > LIMITS.tree_depth:
            raise TemplateTooComplex(
                _TOO_DEEP, line, name, filename)
        return tree

    def compile_expression(self, source: str, undefined_to_none: bool = True) -> Any:
        check_source("{{" + source + "}}")
        try:
            return super().compile_expression(source, undefined_to_none)
        except RecursionError:
            raise TemplateTooComplex(_TOO_DEEP, 1) from None
        except ValueError as exc:
            raise TemplateTooComplex(_literal_message(exc), 1) from None

    def _generate(self, source: nodes.Template, name: str | None, filename: str | None,
                  defer_init: bool = False) -> str:
        depth, line = _tree_depth(source)
        if depth > LIMITS.tree_depth:
            raise TemplateTooComplex(
                _TOO_DEEP, line, name, filename)
        _instrument(source)
        try:
            return super()._generate(source, name, filename, defer_init)
        except RecursionError:
            raise TemplateTooComplex(_TOO_DEEP, 1, name, filename) from None

    # evaluation
    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _tick()
        return _check_result(_BINOPS[operator](left, right))

    def add_filter(self, name: str, f: Callable[..., Any]) -> None:
        """Register a filter whose result is sized and timed like the built-in ones."""
        self.filters[name] = _checked_filter(f)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping):
            try:
                if attribute in obj:
                    return obj[attribute]
            except TypeError:
                pass
        return super().getattr(obj, attribute)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _tick()
        _check_str_method(__obj, args, kwargs)
        return _check_result(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        f_self: str = value.__self__
        is_format_map = value.__name__ == "format_map"
        formatter = _BoundedFormatter(self)

        @wraps(value)
        def bounded(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                kwargs, args = args[0], ()
            _check_text_size(f_self, "a format string")
            return str(_check_result(formatter.vformat(f_self, args, kwargs)))

        return bounded

    # instrumented code calls these through ``environment.<name>``
    @staticmethod
    def stanch_loop(iterable: Any) -> Iterator[Any]:
        _tick()
        for x in iterable:
            _iteration()
            yield x

    @staticmethod
    def stanch_out(value: Any) -> Any:
        _tick(_check_text_size(value, "a value"))
        return value


def _guard(name: str, node: nodes.Node) -> nodes.Expr:
    return nodes.Call(nodes.EnvironmentAttribute(name), [node], [], None, None, lineno=node.lineno)


def _instrument(tree: nodes.Node) -> None:
    """Loops iterate through ``stanch_loop`` (counted, timed); every output goes through
    ``stanch_out`` (sized, timed). ``{% for %}`` bodies and macro bodies included."""
    loops = list(tree.find_all(nodes.For))
    outputs = list(tree.find_all((nodes.Output, nodes.Concat)))
    for loop in loops:
        loop.iter = _guard("stanch_loop", loop.iter)
    for out in outputs:
        out.nodes = [_guard("stanch_out", n) for n in out.nodes]  # type: ignore[attr-defined]

