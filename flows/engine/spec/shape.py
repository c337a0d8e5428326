"""Shape validation: raw YAML data -> ``Runbook``, pydantic errors -> RB003 diagnostics.

Owns: mapping pydantic error ``loc`` tuples onto source positions (aliases ``with``/``if``,
union member tags, missing fields), friendly messages, and partial recovery: when some steps
are malformed, the well-formed ones are still returned so semantic checks can run on them.
Must not touch: YAML parsing, semantic checks, the action registry, Prefect, boto3, Slack.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from flows.engine.spec.diagnostics import Diagnostic, lookalike_note
from flows.engine.spec.loader import JsonPath, SourceMap
from flows.engine.spec.models import Approval, Compensation, InputSpec, Runbook, SlackConfig, Step

__all__ = ["ShapeResult", "validate_shape"]

_ALIASES = {"with_": "with", "if_": "if"}


@dataclass
class ShapeResult:
    """``runbook`` is None only when nothing usable could be recovered."""

    runbook: Runbook | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    step_indices: list[int] | None = None
    unvalidated_ids: set[str] = field(default_factory=set)

    @property
    def complete(self) -> bool:
        return not self.diagnostics


def _model_at(path: JsonPath) -> type[BaseModel] | None:
    """The model that owns the mapping at ``path`` (for 'did you mean' on unknown fields)."""
    shape = tuple("#" if isinstance(p, int) else p for p in path)
    if shape == ():
        return Runbook
    if len(shape) == 2 and shape[0] == "inputs":
        return InputSpec
    owners: dict[tuple[str, ...], type[BaseModel]] = {
        ("steps", "#"): Step,
        ("steps", "#", "approval"): Approval,
        ("steps", "#", "compensate"): Compensation,
        ("slack",): SlackConfig,
    }
    return owners.get(tuple(str(p) for p in shape))


def _resolve(loc: tuple[Any, ...], data: Any) -> tuple[JsonPath, tuple[Any, ...]]:
    """Split ``loc`` into the path that exists in ``data`` and what is left (union tags dropped)."""
    path: list[str | int] = []
    cur = data
    rest = list(loc)
    while rest:
        part = _ALIASES.get(rest[0], rest[0]) if isinstance(rest[0], str) else rest[0]
        in_dict = isinstance(cur, dict) and part in cur
        if in_dict or (isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur)):
            cur = cur[part]
            path.append(part)
            rest.pop(0)
        elif isinstance(part, str) and len(rest) > 1:
            rest.pop(0)  # a union member tag such as 'Compensation' or 'str'
        else:
            break
    return tuple(path), tuple(rest)


def _dotted(path: JsonPath) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "runbook"


def _message(err: dict[str, Any], path: JsonPath, rest: tuple[Any, ...]) -> str:
    kind = err["type"]
    where = _dotted(path)
    if kind == "missing":
        raw = str(rest[-1] if rest else (path[-1] if path else "?"))
        name = _ALIASES.get(raw, raw)
        return f"{where}: missing required field {name!r}" if rest else f"missing required field {name!r}"
    if kind == "extra_forbidden":
        key = path[-1]
        model = _model_at(path[:-1])
        hint = ""
        if model is not None:
            names = [f.alias or n for n, f in model.model_fields.items()]
            close = difflib.get_close_matches(str(key), names, n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        return f"unknown field {key!r}{lookalike_note(str(key))}{hint}"
    if kind == "string_pattern_mismatch" and path and path[-1] in ("id", "name"):
        what = "step id" if path[-1] == "id" else "runbook name"
        return (
            f"{where}: {err.get('input')!r} is not a valid {what}: use lowercase letters, digits"
            f"{', _' if what == 'step id' else ''} and '-', starting with a letter (max 63)"
        )
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {msg}"


def _diagnostics(exc: ValidationError, data: Any, smap: SourceMap, file: str) -> list[Diagnostic]:
    grouped: dict[tuple[JsonPath, bool], list[str]] = {}
    for err in exc.errors():
        path, rest = _resolve(tuple(err["loc"]), data)
        message = _message(dict(err), path, rest)
        at_value = err["type"] not in ("missing", "extra_forbidden") and not rest
        bucket = grouped.setdefault((path, at_value), [])
        if message not in bucket:
            bucket.append(message)
    out: list[Diagnostic] = []
    for (path, at_value), messages in grouped.items():
        line, col = smap.position(path, value=at_value)
        if len(messages) > 1 and all(":" in m for m in messages):  # one field, several union members
            prefix = messages[0].split(":", 1)[0]
            text = f"{prefix}: " + " or ".join(m.split(": ", 1)[1] for m in messages)
            out.append(Diagnostic(file, line, col, "RB003", text))
        else:
            out.extend(Diagnostic(file, line, col, "RB003", m) for m in messages)
    return out


def validate_shape(data: Any, smap: SourceMap, file: str) -> ShapeResult:
    """Validate ``data`` as a ``Runbook``; on failure, recover what can be checked further."""
    if not isinstance(data, dict):
        line, col = smap.position(())
        kind = "empty" if data is None else f"a {type(data).__name__}"
        return ShapeResult(
            None,
            [
                Diagnostic(
                    file, line, col, "RB003", f"a runbook is a mapping (name, title, steps, ...), not {kind}"
                )
            ],
        )
    try:
        return ShapeResult(Runbook.model_validate(data))
    except ValidationError as exc:
        diagnostics = _diagnostics(exc, data, smap, file)
    # Partial recovery: keep well-formed steps and inputs so the semantic checks still run.
    raw_steps = data.get("steps")
    steps: list[Step] = []
    indices: list[int] = []
    unvalidated: set[str] = set()
    for i, raw in enumerate(raw_steps if isinstance(raw_steps, list) else []):
        try:
            steps.append(Step.model_validate(raw))
            indices.append(i)
        except ValidationError:
            if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                unvalidated.add(raw["id"])
    inputs: dict[str, InputSpec] = {}
    raw_inputs = data.get("inputs")
    for name, raw in raw_inputs.items() if isinstance(raw_inputs, dict) else []:
        try:
            inputs[str(name)] = InputSpec.model_validate(raw if raw is not None else {})
        except ValidationError:
            inputs[str(name)] = InputSpec.model_construct()
    strings = {k: data.get(k) if isinstance(data.get(k), str) else None for k in ("report", "postmortem")}
    partial = Runbook.model_construct(
        name=str(data.get("name", "")),
        title=str(data.get("title", "")),
        inputs=inputs,
        steps=steps,
        report=strings["report"],
        postmortem=strings["postmortem"],
    )
    return ShapeResult(partial, diagnostics, indices, unvalidated)
