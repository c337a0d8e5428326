"""Semantic checks over a validated runbook: graph, actions, parameters, templates, files.

Owns: every RB1xx diagnostic. ``check_runbook`` collects all problems (it never stops at the
first) and returns them; it never raises for a runbook mistake.
Must not touch: YAML parsing (``flows.engine.spec.loader``), pydantic shape errors (``flows.engine.spec.shape``),
Prefect, boto3, Slack. It reads the action registry but never runs an action.
"""

from __future__ import annotations

import difflib
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_origin

from jinja2 import nodes
from jinja2.exceptions import TemplateSyntaxError
from pydantic import BaseModel, ValidationError

from flows.engine.expressions import (
    COMPENSATION_ROOTS,
    INCIDENT_FIELDS,
    RUN_FIELDS,
    RUNBOOK_FIELDS,
    SCOPE_ROOTS,
    STEP_FIELDS,
    constant_limit_error,
    environment,
    is_template,
    template_references,
)
from flows.engine.spec.diagnostics import Diagnostic, Severity, lookalike_note
from flows.engine.spec.loader import JsonPath, SourceMap
from flows.engine.spec.models import Compensation, InputSpec, Runbook, Step
from flows.engine.spec.templates import TemplatePathError, resolve_template
from integrations.base import ActionRegistry, ActionSpec

__all__ = ["check_runbook", "upstream"]

INPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HYPHEN_STEP = re.compile(r"\bsteps\.([a-z][a-z0-9_]*(?:-[a-z0-9_]+)+)")
_INPUT_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "list": (list,),
}


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def _fields(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _components(needs: dict[str, list[str]], order: list[str]) -> list[list[str]]:
    """Strongly connected components (iterative Tarjan), dependencies before dependents.

    Every edge ``v -> w`` (``v`` needs ``w``) has ``w``'s component emitted no later than
    ``v``'s. No recursion: a 10,000-step chain needs no deep stack.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in order:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work: list[tuple[str, Iterator[str]]] = [(root, iter(needs[root]))]
        while work:
            v, edges = work[-1]
            advanced = False
            for w in edges:
                if w not in needs:
                    continue
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(needs[w])))
                    advanced = True
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
            if low[v] == index[v]:
                comp: list[str] = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(comp)
    return out


def _cyclic(comp: list[str], needs: dict[str, list[str]]) -> bool:
    return len(comp) > 1 or comp[0] in needs[comp[0]]


def _cycle_path(comp: set[str], needs: dict[str, list[str]], start: str) -> list[str]:
    """A shortest way from ``start`` back to itself inside ``comp`` (breadth-first)."""
    parent: dict[str, str] = {}
    queue = deque([start])
    end: str | None = None
    while queue and end is None:
        cur = queue.popleft()
        for w in needs[cur]:
            if w == start:
                end = cur
                break
            if w in comp and w not in parent:
                parent[w] = cur
                queue.append(w)
    path = [start]
    node = end
    while node is not None and node != start:
        path.insert(1, node)
        node = parent.get(node)
    return [*path, start]


class Ancestry:
    """Transitive ``needs`` of every step as bitsets: linear passes, ~n²/8 bytes at worst.

    A step in a cycle counts as its own ancestor (as every member of its cycle does).
    """

    def __init__(self, needs: dict[str, list[str]], components: list[list[str]]) -> None:
        self.bit = {sid: 1 << i for i, sid in enumerate(needs)}
        self._of: dict[str, int] = {}
        for comp in components:
            members = 0
            for v in comp:
                members |= self.bit[v]
            mask = members if _cyclic(comp, needs) else 0
            for v in comp:
                for w in needs[v]:
                    if w in self._of:  # an earlier component
                        mask |= self._of[w] | self.bit[w]
            for v in comp:
                self._of[v] = mask

    def is_upstream(self, target: str, of: str) -> bool:
        return bool(self._of.get(of, 0) & self.bit.get(target, 0))

    def of(self, step: str) -> set[str]:
        mask = self._of.get(step, 0)
        return {sid for sid, bit in self.bit.items() if mask & bit}


def upstream(needs: dict[str, list[str]]) -> dict[str, set[str]]:
    """Transitive ``needs`` of every step (cycle-safe; unknown names are ignored)."""
    clean = {k: [n for n in v if n in needs] for k, v in needs.items()}
    ancestry = Ancestry(clean, _components(clean, list(clean)))
    return {sid: ancestry.of(sid) for sid in clean}


#: How many "did you mean" searches one runbook gets (each is linear in the candidates).
SUGGESTION_BUDGET = 50
#: Literal ``if`` values the engine treats as false (see docs: "if truth").
_FALSY_TEXT = {"", "false", "no", "off", "0", "none", "null"}
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_GROUP = re.compile(r"^@[a-z0-9][a-z0-9._-]*$")


def _single_expression(text: str) -> nodes.Expr | None:
    """The expression of a template that is exactly one ``{{ expr }}`` (spaces allowed), else None."""
    try:
        tree = environment().parse(text)
    except (TemplateSyntaxError, RecursionError):
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    parts = [n for n in tree.body[0].nodes if not (isinstance(n, nodes.TemplateData) and not n.data.strip())]
    if len(parts) == 1 and not isinstance(parts[0], nodes.TemplateData):
        return parts[0]
    return None


def _constant_false(text: str) -> bool:
    """``if:`` that is false whatever the inputs: ``{{ false }}``, ``{{ 0 }}``, ``{{ none }}``, plain "false"."""
    expr = _single_expression(text)
    if expr is not None:
        if isinstance(expr, nodes.Const):
            value = expr.value
            return (not value) if not isinstance(value, str) else value.strip().lower() in _FALSY_TEXT
        return False
    return not is_template(text) and text.strip().lower() in _FALSY_TEXT


_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_CHAIN = re.compile(rf"\s*({_NAME})((?:\.{_NAME}|\[(?:'[^'\\]*'|\"[^\"\\]*\"|[0-9]+)\])*)\s*")
_LINK = re.compile(rf"\.({_NAME})|\['([^']*)'\]|\[\"([^\"]*)\"\]|\[([0-9]+)\]")
_OUTPUT = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_FAST_ROOTS = frozenset({"inputs", "steps", "item", "incident", "runbook", "params", "output"})


def _simple_references(text: str) -> set[tuple[str | int, ...]] | None:
    """References of a template made only of text and ``{{ a.b['c'][0] }}`` chains, without
    running the Jinja parser (most runbook templates; a 5,000-step runbook has thousands).
    None when the template needs the real parser (statements, filters, operators, ...)."""
    if "{%" in text or "{#" in text or len(text) > 1000:  # long ones get the parser's limits
        return None
    refs: set[tuple[str | int, ...]] = set()
    matches = list(_OUTPUT.finditer(text))
    if text.count("{{") != len(matches) or text.count("}}") != len(matches):
        return None
    for m in matches:
        chain = _CHAIN.fullmatch(m.group(1))
        if chain is None or chain.group(1) not in _FAST_ROOTS:
            return None
        path: list[str | int] = [chain.group(1)]
        for link in _LINK.finditer(chain.group(2)):
            attr, single, double, index = link.groups()
            path.append(int(index) if index is not None else (attr or single or double or ""))
        refs.add(tuple(path))
    return refs


def _local_names(text: str) -> set[str]:
    """Macros defined inside a template (and ``caller``), which are not scope variables."""
    if "macro" not in text and "call" not in text:
        return set()
    try:
        tree = environment().parse(text)
    except (TemplateSyntaxError, RecursionError):
        return set()
    names = {m.name for m in tree.find_all(nodes.Macro)}
    return names | {"caller"} if names or any(True for _ in tree.find_all(nodes.CallBlock)) else names


_SHADOWED = frozenset(name for name in dir(dict) if not name.startswith("_"))


@dataclass
class _Checker:
    runbook: Runbook
    smap: SourceMap
    registry: ActionRegistry
    file: str
    base_dir: Path | None
    steps: list[tuple[int, Step]]
    unvalidated_ids: frozenset[str]
    out: list[Diagnostic] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)
    by_id: dict[str, Step] = field(default_factory=dict)
    ancestry: Ancestry | None = None
    order: list[str] = field(default_factory=list)  # dependencies before dependents
    needs: dict[str, list[str]] = field(default_factory=dict)
    budget: int = SUGGESTION_BUDGET

    # -- helpers -----------------------------------------------------------------------------

    def add(
        self,
        path: JsonPath,
        code: str,
        message: str,
        *,
        value: bool = False,
        hint: str | None = None,
        severity: Severity = "error",
    ) -> None:
        line, col = self.smap.position(path, value=value)
        self.out.append(Diagnostic(self.file, line, col, code, message, severity, hint))

    def did_you_mean(self, name: str, candidates: Iterable[str]) -> str:
        """``_did_you_mean``, plus a note on lookalike characters, within the search budget."""
        note = lookalike_note(name)
        if self.budget <= 0:
            return note
        self.budget -= 1
        return note + _did_you_mean(name, candidates)

    def spec(self, name: str | None) -> ActionSpec[Any, Any] | None:
        return self.registry.get(name) if name is not None and name in self.registry else None

    # -- checks ------------------------------------------------------------------------------

    def run(self) -> list[Diagnostic]:
        self.check_inputs()
        self.check_graph()
        for i, step in self.steps:
            self.check_kind(i, step)
            self.check_action(i, step)
            self.check_compensation(i, step)
            self.check_step_templates(i, step)
            self.check_for_each(i, step)
            self.check_approval(i, step)
        self.check_reachable()
        self.check_files()
        return self.out

    def check_inputs(self) -> None:
        for name, spec in self.runbook.inputs.items():
            path: JsonPath = ("inputs", name)
            if not INPUT_NAME.match(name):
                self.add(path, "RB113", f"input name {name!r} is not an identifier (letters, digits, _)")
            elif name in _SHADOWED:
                self.add(path, "RB113", f"input name {name!r} hides a built-in: `inputs.{name}` would be the "
                                        f"mapping's {name}() method in expressions; choose another name")
            self._check_input_value(spec, spec.default, (*path, "default"), "default")
            for j, choice in enumerate(spec.choices or []):
                self._check_input_value(spec, choice, (*path, "choices", j), "choice")
            if spec.choices and spec.default is not None and spec.default not in spec.choices:
                self.add((*path, "default"), "RB113", f"default {spec.default!r} is not one of the choices")

    def _check_input_value(self, spec: InputSpec, value: Any, path: JsonPath, what: str) -> None:
        if value is None:
            return
        types = _INPUT_TYPES[spec.type]
        if not isinstance(value, types) or (spec.type in ("integer", "number") and isinstance(value, bool)):
            self.add(path, "RB113", f"{what} {value!r} is not of type {spec.type}", value=True)

    def check_graph(self) -> None:
        for i, step in self.steps:
            if step.id in self.ids:
                first = self.ids[step.id]
                line, col = self.smap.position(("steps", first, "id"), value=True)
                self.add(
                    ("steps", i, "id"),
                    "RB101",
                    f"duplicate step id {step.id!r} (first used at {line}:{col})",
                    value=True,
                )
                continue
            self.ids[step.id] = i
            self.by_id[step.id] = step
            if step.id in _SHADOWED:
                self.add(
                    ("steps", i, "id"),
                    "RB118",
                    f"step id {step.id!r} hides a built-in: `steps.{step.id}` would be the mapping's "
                    f"{step.id}() method in expressions; choose another id",
                    value=True,
                )
        known = set(self.ids) | self.unvalidated_ids
        needs: dict[str, list[str]] = {}
        for i, step in self.steps:
            if self.ids.get(step.id) != i:
                continue
            needs[step.id] = []
            for j, dep in enumerate(step.needs):
                if dep not in known:
                    self.add(
                        ("steps", i, "needs", j),
                        "RB102",
                        f"step {step.id!r} needs unknown step {dep!r}{self.did_you_mean(dep, known)}",
                    )
                elif dep in self.ids:
                    if self._misplaced_need(i, j, step, self.by_id[dep]):
                        continue
                    needs[step.id].append(dep)
        explicit = {sid: list(deps) for sid, deps in needs.items()}
        ordinary = [sid for sid in needs if not self.by_id[sid].runs_last]
        for sid in needs:  # a when-step runs after every ordinary step: all of them are upstream
            if self.by_id[sid].runs_last:
                needs[sid] = ordinary + needs[sid]
        order = [s.id for _, s in self.steps if s.id in needs]
        components = _components(needs, order)
        position = {sid: k for k, sid in enumerate(order)}
        cycles = [
            _cycle_path(set(c), needs, min(c, key=position.__getitem__)) for c in components if _cyclic(c, needs)
        ]
        for cycle in cycles:
            i = self.ids[cycle[0]]
            j = self.by_id[cycle[0]].needs.index(cycle[1])
            self.add(
                ("steps", i, "needs", j),
                "RB103",
                "dependency cycle: " + " -> ".join(cycle) + " (each step needs the next)",
            )
        self.ancestry = Ancestry(needs, components)
        self.order = [sid for comp in components for sid in comp]
        self.needs = explicit  # a when-step is not skipped because an ordinary step was

    def _misplaced_need(self, i: int, j: int, step: Step, dep: Step) -> bool:
        """RB122: ``needs`` across the boundary between ordinary steps and when-steps."""
        if step.runs_last and not dep.runs_last:
            self.add(("steps", i, "needs", j), "RB122",
                     f"step {step.id!r} (when: {step.when}) runs after every other step: it cannot "
                     f"need {dep.id!r}", hint=f"remove {dep.id!r} from needs; every ordinary step is "
                     "already upstream of a when-step (its output and status are in scope)")
            return True
        if dep.runs_last and not step.runs_last:
            self.add(("steps", i, "needs", j), "RB122",
                     f"step {step.id!r} needs {dep.id!r}, which runs last (when: {dep.when}): "
                     f"{step.id!r} would never be ready", hint=f"give {step.id!r} a when: too, or drop the need")
            return True
        return False

    def check_kind(self, i: int, step: Step) -> None:
        if step.approval is not None and step.runs_last:
            self.add(("steps", i, "when"), "RB114", f"'when: {step.when}' does not apply to an approval step "
                     "(a run cannot pause after it has finished)", value=True)
        if step.approval is not None:
            for name, given in (
                ("with", bool(step.with_)),
                ("for_each", step.for_each is not None),
                ("compensate", step.compensate is not None),
                ("retries", step.retries > 0),
                ("timeout", step.timeout is not None),
                ("concurrency", step.concurrency is not None),
                ("item_name", step.item_name is not None),
                ("batch", step.batch is not None),
            ):
                if given:
                    self.add(("steps", i, name), "RB114", f"{name!r} does not apply to an approval step")
            return
        if step.for_each is None:
            for name in ("concurrency", "item_name", "batch"):
                if getattr(step, name) is not None:
                    self.add(
                        ("steps", i, name),
                        "RB114",
                        f"{name!r} only applies to a for_each step",
                        severity="warning",
                    )

    def check_action(self, i: int, step: Step) -> None:
        if step.action is None:
            return
        spec = self.spec(step.action)
        if spec is None:
            self.add(
                ("steps", i, "action"),
                "RB104",
                f"unknown action {step.action!r}{lookalike_note(step.action)}{_suggest(self.registry, step.action)}",
                value=True,
            )
            return
        self.check_params(spec, step.with_, ("steps", i, "with"), ("steps", i))

    def check_params(
        self, spec: ActionSpec[Any, Any], raw: dict[str, Any], path: JsonPath, fallback: JsonPath
    ) -> None:
        """RB105: validate literal values; templated ones are checked at run time."""
        model = spec.params
        where = path if path in self.smap else fallback
        names = _fields(model)
        templated = {k for k, v in raw.items() if is_template(v)}
        forbid = model.model_config.get("extra") == "forbid"
        suggested: set[str] = set()  # a misspelt key is one mistake, not also a missing one
        for key in raw:
            if forbid and key not in names:
                suggested.update(difflib.get_close_matches(str(key), names, n=1, cutoff=0.6))
                self.add(
                    (*path, key),
                    "RB105",
                    f"unknown parameter {key!r} for action {spec.name!r}{_did_you_mean(str(key), names)}",
                )
        literal = {k: v for k, v in raw.items() if k not in templated and (not forbid or k in names)}
        try:
            model.model_validate(literal)
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(err["loc"])
                if loc and loc[0] in templated:
                    continue
                if not loc:
                    if not templated:
                        self.add(where, "RB105", f"parameters of {spec.name!r}: {_msg(err)}")
                    continue
                if err["type"] == "missing" and len(loc) == 1:
                    if loc[0] in suggested:
                        continue
                    self.add(
                        where, "RB105", f"missing required parameter {loc[0]!r} for action {spec.name!r}"
                    )
                    continue
                dotted = ".".join(str(p) for p in loc)
                self.add((*path, *loc), "RB105", f"parameter {dotted!r}: {_msg(err)}", value=True)

    def check_compensation(self, i: int, step: Step) -> None:
        comp = step.compensate
        if comp is None or step.approval is not None:
            return
        name = comp if isinstance(comp, str) else comp.action
        path: JsonPath = (
            ("steps", i, "compensate") if isinstance(comp, str) else ("steps", i, "compensate", "action")
        )
        spec = self.spec(name)
        if spec is None:
            self.add(
                path,
                "RB110",
                f"unknown compensation action {name!r}{lookalike_note(name)}{_suggest(self.registry, name)}",
                value=True,
            )
            return
        if isinstance(comp, Compensation):
            self.check_params(
                spec, comp.with_, ("steps", i, "compensate", "with"), ("steps", i, "compensate")
            )
            return
        action = self.spec(step.action)
        if action is None or action.compensation_params is not None:
            return
        # Fed with the step's own rendered parameters, as they are.
        given = set(step.with_)
        hint = "write compensate: {action: ..., with: {...}} to give its parameters explicitly"
        names = _fields(spec.params)
        for fname, finfo in spec.params.model_fields.items():
            key = finfo.alias or fname
            if finfo.is_required() and key not in given:
                self.add(
                    path,
                    "RB105",
                    f"compensation {name!r} needs parameter {key!r}, which step {step.id!r} does not set",
                    value=True,
                    hint=hint,
                )
        if spec.params.model_config.get("extra") == "forbid":
            for key in sorted(given - set(names)):
                self.add(
                    path,
                    "RB105",
                    f"compensation {name!r} does not accept parameter {key!r} of step {step.id!r}",
                    value=True,
                    hint=hint,
                )

    # -- templates ---------------------------------------------------------------------------

    def check_step_templates(self, i: int, step: Step) -> None:
        base: JsonPath = ("steps", i)
        fan_out = step.for_each is not None
        sources: list[tuple[JsonPath, str, bool, bool]] = []  # path, template, item ok, compensation
        for leaf_path, text in _leaves(step.with_, (*base, "with")):
            sources.append((leaf_path, text, fan_out, False))
        for name, prose in (("title", step.title), ("description", step.description)):
            if prose is not None and is_template(prose):
                sources.append(((*base, name), prose, fan_out, False))
        for name, val in (("if", step.if_), ("for_each", step.for_each), ("item_name", step.item_name)):
            if isinstance(val, str) and not is_template(val):
                self.add(
                    (*base, name),
                    "RB116",
                    f"{name!r} must be an expression in {{{{ }}}}, not plain text",
                    value=True,
                    hint=f'write {name}: "{{{{ {val} }}}}"',
                )
        if step.if_ is not None:
            sources.append(((*base, "if"), step.if_, fan_out, False))
        if isinstance(step.for_each, str):
            sources.append(((*base, "for_each"), step.for_each, False, False))
        elif isinstance(step.for_each, list):
            sources.extend((p, t, False, False) for p, t in _leaves(step.for_each, (*base, "for_each")))
        if step.item_name is not None:
            sources.append(((*base, "item_name"), step.item_name, fan_out, False))
        if step.approval is not None:
            sources.extend(
                (p, t, False, False)
                for p, t in _leaves(
                    {"message": step.approval.message, "approvers": step.approval.approvers},
                    (*base, "approval"),
                )
            )
        if isinstance(step.compensate, Compensation):
            sources.extend(
                (p, t, fan_out, True)
                for p, t in _leaves(step.compensate.with_, (*base, "compensate", "with"))
            )
        for path, text, item_ok, comp in sources:
            self.check_template(step, path, text, item_ok=item_ok, compensation=comp)

    def check_template(
        self, step: Step, path: JsonPath, text: str, *, item_ok: bool, compensation: bool
    ) -> None:
        try:
            fast = _simple_references(text)
            refs = fast if fast is not None else template_references(text)
        except TemplateSyntaxError as exc:
            self.add(path, "RB108", f"template syntax error: {exc.message}", value=True)
            return
        except RecursionError:
            self.add(path, "RB108", "template syntax error: expression nested too deeply", value=True)
            return
        # e.g. {{ 10 ** (10 ** 10) }}: fails at run time for sure (plain references have no constants)
        refused = constant_limit_error(text) if fast is None else None
        if refused is not None:
            self.add(path, "RB108", f"expression refused: {refused}", value=True)
            return
        local = _local_names(text)
        refs = {r for r in refs if r[0] not in local}
        for m in _HYPHEN_STEP.finditer(text):
            step_id = m.group(1)
            if step_id in self.ids or step_id in self.unvalidated_ids:
                self.add(
                    path,
                    "RB107",
                    f"'steps.{step_id}' reads as a subtraction in Jinja: write steps['{step_id}']",
                    value=True,
                )
                first, *pieces = step_id.split("-")
                refs = {r for r in refs if r[:2] != ("steps", first) and r[0] not in pieces}
        for ref in sorted(refs, key=lambda r: tuple(str(p) for p in r)):
            self.check_reference(step, path, ref, item_ok=item_ok, compensation=compensation)

    def check_reference(
        self, step: Step, path: JsonPath, ref: tuple[str | int, ...], *, item_ok: bool, compensation: bool
    ) -> None:
        root = ref[0]
        attr = ref[1] if len(ref) > 1 else None
        if root == "inputs":
            if attr is not None and attr not in self.runbook.inputs:
                self.add(
                    path,
                    "RB106",
                    f"unknown input {attr!r}{self.did_you_mean(str(attr), self.runbook.inputs)}",
                    value=True,
                )
        elif root == "steps":
            self.check_step_reference(step, path, ref)
        elif root == "item":
            if not item_ok:
                where = "in its own for_each" if step.for_each is not None else "without for_each"
                self.add(
                    path, "RB109", f"'item' is only defined inside a for_each step (used {where})", value=True
                )
        elif root in ("incident", "runbook"):
            allowed = INCIDENT_FIELDS if root == "incident" else RUNBOOK_FIELDS
            if attr is not None and attr not in allowed:
                self.add(
                    path,
                    "RB112",
                    f"'{root}' has no attribute {attr!r} (it has {', '.join(sorted(allowed))})",
                    value=True,
                )
        elif root == "run" and step.runs_last:
            if attr is not None and attr not in RUN_FIELDS:
                self.add(path, "RB112", f"'run' has no attribute {attr!r} (it has {', '.join(sorted(RUN_FIELDS))})",
                         value=True)
        elif root == "run":
            self.add(path, "RB112", "'run' (the run's outcome) is only defined in a 'when: always' or "
                     "'when: on_failure' step", value=True,
                     hint="such a step runs after every other step is final; an ordinary step cannot know "
                     "the outcome yet")
        elif compensation and root in COMPENSATION_ROOTS:
            self.check_compensation_reference(step, path, ref)
        else:
            scope = sorted(SCOPE_ROOTS | (COMPENSATION_ROOTS if compensation else set()))
            self.add(
                path,
                "RB112",
                f"unknown variable {root!r}{_did_you_mean(str(root), scope)} (in scope: {', '.join(scope)})",
                value=True,
            )

    def check_compensation_reference(self, step: Step, path: JsonPath, ref: tuple[str | int, ...]) -> None:
        """``output.<field>`` / ``params.<field>`` in a compensation's ``with:``, against the step's
        action: its result model and its parameter model (per item for a fan-out)."""
        spec = self.spec(step.action)
        if spec is None or len(ref) < 2 or not isinstance(ref[1], str):
            return
        model = spec.result if ref[0] == "output" else spec.params
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return
        if model.model_config.get("extra") == "allow":
            return
        names = _fields(model)
        if ref[1] in names:
            return
        if ref[0] == "output":
            self.add(
                path,
                "RB115",
                f"compensation reads output field {ref[1]!r}, which action {spec.name!r} does not return"
                f"{self.did_you_mean(ref[1], names)}",
                value=True,
            )
        else:
            self.add(
                path,
                "RB112",
                f"compensation reads params.{ref[1]}, which action {spec.name!r} does not take"
                f"{self.did_you_mean(ref[1], names)}",
                value=True,
            )

    def check_step_reference(self, step: Step, path: JsonPath, ref: tuple[str | int, ...]) -> None:
        if len(ref) < 2 or not isinstance(ref[1], str):
            self.add(path, "RB107", "refer to one step by name: steps.<id> or steps['<id>']", value=True)
            return
        target = ref[1]
        if target == step.id:
            self.add(
                path,
                "RB107",
                f"step {step.id!r} refers to its own result",
                value=True,
                hint="a compensation's with: can use 'output' and 'params'",
            )
            return
        if target in self.unvalidated_ids and target not in self.ids:
            return
        if target not in self.ids:
            self.add(path, "RB107", f"unknown step {target!r}{self.did_you_mean(target, self.ids)}", value=True)
            return
        if self.ancestry is None or not self.ancestry.is_upstream(target, step.id):
            self.add(
                path,
                "RB107",
                f"step {step.id!r} uses step {target!r}, which is not upstream: add {target!r} to its needs",
                value=True,
            )
        if len(ref) < 3:
            return
        if ref[2] not in STEP_FIELDS:
            self.add(
                path,
                "RB112",
                f"steps.{target} has no attribute {ref[2]!r} (it has {', '.join(sorted(STEP_FIELDS))})",
                value=True,
            )
            return
        self.check_output_field(path, target, ref)

    def check_output_field(self, path: JsonPath, target: str, ref: tuple[str | int, ...]) -> None:
        upstream_step = self.by_id[target]
        if ref[2] != "output" or len(ref) < 4 or upstream_step.for_each is not None:
            return
        spec = self.spec(upstream_step.action)
        if spec is None or not isinstance(ref[3], str):
            return
        result = spec.result
        if isinstance(result, type) and issubclass(result, BaseModel):
            if result.model_config.get("extra") == "allow":
                return
            names = _fields(result)
            if ref[3] not in names:
                self.add(
                    path,
                    "RB115",
                    f"action {spec.name!r} has no output field {ref[3]!r}{self.did_you_mean(ref[3], names)}",
                    value=True,
                )

    # -- files -------------------------------------------------------------------------------

    def check_files(self) -> None:
        refs: list[tuple[JsonPath, str]] = []
        if self.runbook.report:
            refs.append((("report",), self.runbook.report))
        if self.runbook.postmortem:
            refs.append((("postmortem",), self.runbook.postmortem))
        refs.extend((("steps", i, "report"), s.report) for i, s in self.steps if s.report)
        if self.base_dir is None:
            for path, rel in refs:  # no folder to resolve against: still refuse what can never be inside
                if Path(rel).is_absolute() or ".." in Path(rel).parts or "\x00" in rel:
                    self.add(path, "RB117", f"template path {rel!r} must stay inside the runbook's folder",
                             value=True)
            return
        parsed: set[Path] = set()
        for path, rel in refs:
            try:
                target = resolve_template(self.base_dir, rel)
            except TemplatePathError as exc:
                self.add(
                    path,
                    "RB117",
                    str(exc),
                    value=True,
                    hint="templates live next to the runbook (or in a folder listed in STANCH_TEMPLATE_DIRS)",
                )
                continue
            if not target.is_file():
                self.add(
                    path, "RB111", f"template file {rel!r} not found (relative to the runbook)", value=True
                )
                continue
            if target in parsed:
                continue
            parsed.add(target)
            shown = str(Path(self.file).parent / rel)
            try:
                source = target.read_text(encoding="utf-8")
                environment().parse(source)
            except TemplateSyntaxError as exc:
                self.out.append(
                    Diagnostic(shown, exc.lineno or 1, 1, "RB108", f"template syntax error: {exc.message}")
                )
            except RecursionError:
                self.out.append(Diagnostic(shown, 1, 1, "RB108", "template syntax error: nested too deeply"))
            except (OSError, UnicodeDecodeError) as exc:
                self.add(path, "RB111", f"template file {rel!r} unreadable: {exc}", value=True)

    # -- meaning beyond the shape --------------------------------------------------------------

    def check_for_each(self, i: int, step: Step) -> None:
        """RB119: a ``for_each`` that can only be a scalar, a string or a mapping."""
        fe = step.for_each
        if not isinstance(fe, str) or not is_template(fe):
            return
        path: JsonPath = ("steps", i, "for_each")
        expr = _single_expression(fe)
        if expr is None:
            try:
                environment().parse(fe)
            except (TemplateSyntaxError, RecursionError):
                return  # RB108 already
            self.add(path, "RB119", "for_each renders text, not a list: write exactly one {{ expression }}",
                     value=True)
            return
        what: str | None = None
        if isinstance(expr, nodes.Const) and not isinstance(expr.value, list | tuple):
            what = f"the constant {expr.value!r}"
        elif isinstance(expr, nodes.Dict):
            what = "a mapping"
        elif isinstance(expr, nodes.Concat | nodes.Mod):
            what = "a string"
        elif isinstance(expr, nodes.Getattr) and isinstance(expr.node, nodes.Name) and expr.node.name == "inputs":
            spec = self.runbook.inputs.get(expr.attr)
            if spec is not None and spec.type != "list":
                what = f"input {expr.attr!r} of type {spec.type}"
        else:
            what = self._scalar_output(fe)
        if what is not None:
            self.add(path, "RB119", f"for_each must give a list, but it is {what}", value=True,
                     hint="for_each takes a list: a literal [..], a list input, or a step output list")

    def _scalar_output(self, text: str) -> str | None:
        """``{{ steps.x.output.f }}`` where the action's result field ``f`` is a str/number/bool."""
        refs = _simple_references(text)
        if not refs or len(refs) != 1:
            return None
        ref = next(iter(refs))
        if len(ref) != 4 or ref[0] != "steps" or ref[2] != "output" or not isinstance(ref[1], str):
            return None
        upstream_step = self.by_id.get(ref[1])
        spec = self.spec(upstream_step.action) if upstream_step and upstream_step.for_each is None else None
        result = spec.result if spec is not None else None
        if not (isinstance(result, type) and issubclass(result, BaseModel)):
            return None
        info = next((f for n, f in result.model_fields.items() if (f.alias or n) == ref[3]), None)
        kind = info.annotation if info is not None else None
        if kind in (str, int, float, bool):
            shown = getattr(kind, "__name__", str(kind))
        elif kind is dict or get_origin(kind) is dict or (isinstance(kind, type) and issubclass(kind, BaseModel)):
            shown = "a mapping"
        else:
            return None
        return f"output field {ref[3]!r} of action {spec.name!r}: {shown}"  # type: ignore[union-attr]

    def check_approval(self, i: int, step: Step) -> None:
        """RB120: approver ids and min_approvals that can never be satisfied."""
        approval = step.approval
        if approval is None:
            return
        base: JsonPath = ("steps", i, "approval")
        users: set[str] = set()
        open_ended = False  # a group or a template: its size is only known at run time
        for j, who in enumerate(approval.approvers):
            if is_template(who) or _GROUP.match(who):
                open_ended = True
            elif _USER_ID.match(who):
                users.add(who)
            else:
                self.add(
                    (*base, "approvers", j),
                    "RB120",
                    f"approver {who!r} is neither a Slack user id (U… or W…) nor a @user-group handle"
                    f"{lookalike_note(who)}",
                    value=True,
                )
                open_ended = True  # do not also complain about the count
        if not open_ended and approval.min_approvals > len(users):
            path: JsonPath = (*base, "min_approvals")
            self.add(
                path if path in self.smap else base,
                "RB120",
                f"min_approvals is {approval.min_approvals} but only {len(users)} distinct approver"
                f"{'s are' if len(users) != 1 else ' is'} listed: the gate can never open",
                value=True,
            )

    def check_reachable(self) -> None:
        """RB121 (warning): steps that can never run.

        A step whose ``if`` is constant-false is always skipped, and a skipped step skips every
        step that needs it, directly or not (see "How a run proceeds").
        """
        dead: dict[str, str] = {}  # step -> the always-skipped step that causes it
        for sid in self.order:
            step = self.by_id[sid]
            if step.if_ is not None and _constant_false(step.if_):
                dead[sid] = sid
                continue
            cause = next((dead[n] for n in self.needs.get(sid, []) if n in dead), None)
            if cause is not None:
                dead[sid] = cause
        for sid, cause in dead.items():
            i = self.ids[sid]
            if cause == sid:
                self.add(("steps", i, "if"), "RB121", f"step {sid!r} never runs: its if is always false",
                         value=True, severity="warning")
            else:
                self.add(("steps", i, "needs"), "RB121",
                         f"step {sid!r} never runs: it needs {cause!r}, which is always skipped",
                         severity="warning")


def _suggest(registry: ActionRegistry, name: str) -> str:
    close = registry.suggest(name)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def _msg(err: Any) -> str:
    return str(err["msg"]).removeprefix("Value error, ")


def _leaves(value: Any, path: JsonPath) -> Iterator[tuple[JsonPath, str]]:
    """Template strings inside ``value`` with their JSON paths."""
    if isinstance(value, str):
        if is_template(value):
            yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list):
        for j, v in enumerate(value):
            yield from _leaves(v, (*path, j))


def check_runbook(
    runbook: Runbook,
    source_map: SourceMap,
    registry: ActionRegistry,
    *,
    file: str,
    base_dir: Path | None = None,
    step_indices: list[int] | None = None,
    unvalidated_ids: Iterable[str] = (),
) -> list[Diagnostic]:
    """Every semantic problem in ``runbook`` (errors and warnings, unsorted).

    ``step_indices[k]`` is the position in the YAML ``steps:`` list of ``runbook.steps[k]`` (when
    some steps failed schema validation and were left out); ``unvalidated_ids`` are the ids of
    those left-out steps, so that references to them are not reported twice.
    """
    indices = step_indices if step_indices is not None else list(range(len(runbook.steps)))
    checker = _Checker(
        runbook=runbook,
        smap=source_map,
        registry=registry,
        file=file,
        base_dir=base_dir,
        steps=list(zip(indices, runbook.steps, strict=True)),
        unvalidated_ids=frozenset(unvalidated_ids),
    )
    return checker.run()
