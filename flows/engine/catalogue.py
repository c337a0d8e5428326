"""The action catalogue as a table (``stanch actions``) and as ``docs/actions.md``.

Owns: rendering registry metadata (name, summary, mutating/idempotent, compensation, params
and result fields) for humans. Must not touch: Prefect, boto3, Slack.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rich.table import Table

from integrations.base import ActionRegistry, ActionSpec


def _type_name(annotation: Any) -> str:
    text = str(annotation) if getattr(annotation, "__args__", None) else getattr(annotation, "__name__", None)
    text = text or str(annotation)
    for noise in ("typing.", "integrations.", "pydantic.", "datetime."):
        text = text.replace(noise, "")
    return re.sub(r"<class '([\w.]+)'>", r"\1", text)


def _fields(model: Any) -> list[tuple[str, str, bool, str]]:
    out = []
    for name, f in model.model_fields.items():
        ann = _type_name(f.annotation).replace("|", "\\|")
        out.append((f.alias or name, ann, f.is_required(), (f.description or "").replace("|", "\\|")))
    return out


def actions_table(registry: ActionRegistry) -> Table:
    table = Table(title="stanch actions", show_lines=False)
    table.add_column("action", no_wrap=True)
    table.add_column("summary")
    table.add_column("mutating")
    table.add_column("idempotent")
    table.add_column("undo", no_wrap=True)
    for spec in registry.specs():
        table.add_row(spec.name, spec.summary, "yes" if spec.mutating else "no",
                      "yes" if spec.idempotent else "no", spec.compensation or "")
    return table


def _section(spec: ActionSpec[Any, Any]) -> str:
    lines = [f"## `{spec.name}`", "", spec.summary, "",
             f"- mutating: **{'yes' if spec.mutating else 'no'}** · idempotent: "
             f"**{'yes' if spec.idempotent else 'no'}**"
             + (f" · compensation: `{spec.compensation}`" if spec.compensation else ""), ""]
    doc = (spec.run.__doc__ or "").strip()
    if doc:
        lines += [doc, ""]
    lines += ["| param | type | required | description |", "|---|---|---|---|"]
    lines += [f"| `{n}` | `{t}` | {'yes' if r else 'no'} | {d} |" for n, t, r, d in _fields(spec.params)]
    lines += ["", "Result:", "", "| field | type | description |", "|---|---|---|"]
    lines += [f"| `{n}` | `{t}` | {d} |" for n, t, _, d in _fields(spec.result)]
    return "\n".join(lines) + "\n"


def actions_markdown(registry: ActionRegistry) -> str:
    head = ("# Action catalogue\n\n"
            "Generated from the registry by `stanch actions --markdown > docs/actions.md`; "
            "a test checks it is current. A runbook's `action:` must be one of these names.\n\n")
    index = "\n".join(f"- [`{s.name}`](#{s.name.replace('.', '').replace('_', '_')}) — {s.summary}"
                      for s in registry.specs())
    return head + index + "\n\n" + "\n".join(_section(s) for s in registry.specs())


def inputs_table(plan: Any) -> Any:
    """A rich table of a compiled runbook's inputs (``stanch run RUNBOOK --help``, ``stanch inputs``)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    title = Text.assemble((f"Inputs of {plan.name}", "bold"), f" — {plan.runbook.title} ({plan.source})")
    if not plan.inputs:
        return Group(title, Text("  (none)"))
    table = Table(show_lines=False, box=None, pad_edge=False)
    for col in ("input", "type", "required / default", "description"):
        table.add_column(col, overflow="fold")
    for name, spec in plan.inputs.items():
        if spec.is_required:
            need = "required"
        elif spec.default is not None:
            need = f"default {json.dumps(spec.default)}"
        else:
            need = "optional"
        desc = spec.description or ""
        if spec.choices:
            desc = (desc + "; " if desc else "") + "one of " + ", ".join(map(str, spec.choices))
        if spec.secret:
            desc = (desc + " " if desc else "") + "[secret: never shown or stored]"
        table.add_row(f"-i {name}=…", spec.type, need, desc)
    return Group(title, table)
