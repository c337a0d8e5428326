"""Semantic checks over a validated runbook: graph, actions, parameters, templates, files.

Owns: every RB1xx diagnostic. ``check_runbook`` collects all problems (it never stops at the
first) and returns them; it never raises for a runbook mistake.
Must not touch: YAML parsing (``flows.spec.loader``), pydantic shape errors (``flows.spec.shape``),
Prefect, boto3, Slack. It reads the action registry but never runs an action.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2.exceptions import TemplateSyntaxError
from pydantic import BaseModel, ValidationError

from flows.expressions import (
    COMPENSATION_ROOTS,
    INCIDENT_FIELDS,
    RUNBOOK_FIELDS,
    SCOPE_ROOTS,
    STEP_FIELDS,
    constant_limit_error,
    environment,
    is_template,
    template_references,
)
from flows.spec.diagnostics import Diagnostic, Severity
from flows.spec.loader import JsonPath, SourceMap
from flows.spec.models import Compensation, InputSpec, Runbook, Step
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


def upstream(needs: dict[str, list[str]]) -> dict[str, set[str]]:
    """Transitive ``needs`` of every step (cycle-safe; unknown names are ignored)."""
    out: dict[str, set[str]] = {}
    for start in needs:
        seen: set[str] = set()
        stack = [n for n in needs[start] if n in needs]
        while stack:
            cur = stack.pop()
            if cur in seen:
                continue
            seen.add(cur)
            stack.extend(n for n in needs[cur] if n in needs)
        out[start] = seen
    return out


def _cycles(needs: dict[str, list[str]], order: list[str]) -> list[list[str]]:
    """One concrete cycle per strongly connected component (Tarjan), in runbook order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in needs[v]:
            if w not in needs:
                continue
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp: set[str] = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1 or v in needs[v]:
                components.append(comp)

    for v in order:
        if v not in index:
            strong(v)

    cycles: list[list[str]] = []
    for comp in components:
        start = next(v for v in order if v in comp)
        parent: dict[str, str] = {}
        queue = [start]
        end: str | None = None
        while queue and end is None:  # shortest way back to start, inside the component
            cur = queue.pop(0)
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
        cycles.append([*path, start])
    return cycles


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
    ancestors: dict[str, set[str]] = field(default_factory=dict)

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
                        f"step {step.id!r} needs unknown step {dep!r}{_did_you_mean(dep, known)}",
                    )
                elif dep in self.ids:
                    needs[step.id].append(dep)
        for cycle in _cycles(needs, [s.id for _, s in self.steps if s.id in needs]):
            i = self.ids[cycle[0]]
            j = self.by_id[cycle[0]].needs.index(cycle[1])
            self.add(
                ("steps", i, "needs", j),
                "RB103",
                "dependency cycle: " + " -> ".join(cycle) + " (each step needs the next)",
            )
        self.ancestors = upstream(needs)

    def check_kind(self, i: int, step: Step) -> None:
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
                f"unknown action {step.action!r}{_suggest(self.registry, step.action)}",
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
                f"unknown compensation action {name!r}{_suggest(self.registry, name)}",
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
            refs = template_references(text)
        except TemplateSyntaxError as exc:
            self.add(path, "RB108", f"template syntax error: {exc.message}", value=True)
            return
        refused = constant_limit_error(text)  # e.g. {{ 10 ** (10 ** 10) }}: fails at run time for sure
        if refused is not None:
            self.add(path, "RB108", f"expression refused: {refused}", value=True)
            return
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
                    f"unknown input {attr!r}{_did_you_mean(str(attr), self.runbook.inputs)}",
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
        elif compensation and root in COMPENSATION_ROOTS:
            return
        else:
            scope = sorted(SCOPE_ROOTS | (COMPENSATION_ROOTS if compensation else set()))
            self.add(
                path,
                "RB112",
                f"unknown variable {root!r}{_did_you_mean(str(root), scope)} (in scope: {', '.join(scope)})",
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
            self.add(path, "RB107", f"unknown step {target!r}{_did_you_mean(target, self.ids)}", value=True)
            return
        if target not in self.ancestors.get(step.id, set()):
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
                    f"action {spec.name!r} has no output field {ref[3]!r}{_did_you_mean(ref[3], names)}",
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
            return
        for path, rel in refs:
            target = self.base_dir / rel
            if not target.is_file():
                self.add(
                    path, "RB111", f"template file {rel!r} not found (relative to the runbook)", value=True
                )
                continue
            try:
                environment().parse(target.read_text(encoding="utf-8"))
            except TemplateSyntaxError as exc:
                shown = str(Path(self.file).parent / rel)
                self.out.append(
                    Diagnostic(shown, exc.lineno or 1, 1, "RB108", f"template syntax error: {exc.message}")
                )
            except (OSError, UnicodeDecodeError) as exc:
                self.add(path, "RB111", f"template file {rel!r} unreadable: {exc}", value=True)


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
