"""``stanch plan``: what a run would do, step by step, without any side effect.

Owns: ``dry_run`` — walks the plan in order; read-only steps (``mutating=False``) are executed
for real so later parameters and fan-outs resolve (e.g. the scope of a compromised dependency);
mutating steps are only rendered and *described* (the calls they would make, from a read-only
look at current state). ``render_plan`` formats it. Must not touch: Prefect.
"""

from __future__ import annotations

import json
from typing import Any

from flows.engine.compiler import Plan
from flows.engine.expressions import ExpressionError, ExpressionLimitError, is_truthy, render_value
from flows.engine.items import item_key
from integrations.base import ActionContext, ActionRegistry
from integrations.errors import StanchError
from integrations.settings import StanchSettings

PENDING = "(known at run time)"


def _render(value: Any, scope: dict[str, Any]) -> tuple[Any, bool]:
    try:
        return render_value(value, scope), True
    except ExpressionLimitError:
        raise  # it would fail the same way at run time: say so now
    except ExpressionError:
        return value, False


def _render_params(with_: dict[str, Any], scope: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    out, complete = {}, True
    for k, v in with_.items():
        out[k], ok = _render(v, scope)
        if not ok:
            out[k] = f"{PENDING}: {v}"
            complete = False
    return out, complete


def dry_run(plan: Plan, inputs: dict[str, Any], registry: ActionRegistry,
            settings: StanchSettings) -> list[dict[str, Any]]:
    scope: dict[str, Any] = {"inputs": inputs, "steps": {},
                             "incident": {"id": "(new)", "drill": False, "started_at": "(at run time)"},
                             "runbook": {"name": plan.name, "title": plan.runbook.title,
                                         "severity": plan.runbook.severity, "owner": plan.runbook.owner}}
    rows: list[dict[str, Any]] = []
    for n, step in enumerate(plan.steps, start=1):
        try:
            row: dict[str, Any] = {"n": n, "id": step.id, "title": step.title, "action": step.action,
                                   "needs": list(step.needs), "mutating": step.mutating, "when": None,
                                   "fan_out": None, "calls": [], "operations": [], "note": None}
            if step.runs_last:
                row["when"] = ("when: always — after every other step, before compensations" if step.when == "always"
                               else "when: on_failure — only if the run failed, before compensations")
            if step.if_:
                cond, ok = _render(step.if_, scope)
                shown = f"if {step.if_} → {'true' if ok and is_truthy(cond) else 'false' if ok else PENDING}"
                row["when"] = f"{row['when']}; {shown}" if row["when"] else shown
            if step.approval is not None:
                row["note"] = (f"approval by {', '.join(step.approval.approvers)} "
                               f"(min {step.approval.min_approvals}, expires after {step.approval.expires:.0f}s"
                               + ("; if denied: skipped with the steps that need it" if step.approval.on_deny == "skip"
                                  else "") + ")")
                rows.append(row)
                continue
            calls: list[tuple[str | None, dict[str, Any], bool]] = []
            if step.for_each is not None:
                items, ok = _render(step.for_each, scope)
                if ok and isinstance(items, list):
                    row["fan_out"] = {"over": step.for_each, "count": len(items), "concurrency": step.concurrency}
                    for i, item in enumerate(items):
                        params, complete = _render_params(step.with_, {**scope, "item": item})
                        calls.append((item_key(step, item, i, scope), params, complete))
                else:
                    row["fan_out"] = {"over": step.for_each, "count": None, "concurrency": step.concurrency}
            else:
                params, complete = _render_params(step.with_, scope)
                calls.append((None, params, complete))
            spec = registry.get(step.action) if step.action else None
            outputs = []
            for key, params, complete in calls:
                call: dict[str, Any] = {"item": key, "with": params}
                row["calls"].append(call)
                if spec is None or not complete:
                    continue
                ctx = ActionContext(incident_id="plan", step_id=step.id, settings=settings, item_key=key)
                try:
                    typed = spec.validate_params(params)
                    if not spec.mutating:
                        outputs.append(spec.run(ctx, typed).model_dump(mode="json"))
                        call["evaluated"] = True
                    elif spec.describe is not None:
                        call["operations"] = [op.model_dump(exclude_none=True) for op in spec.describe(ctx, typed)]
                except (StanchError, ValueError) as exc:
                    call["note"] = f"could not evaluate: {exc}"
            if spec is not None and not spec.mutating and outputs:
                out = outputs[0] if step.for_each is None else {"items": outputs}
                scope["steps"][step.id] = {"output": out, "status": "planned"}
                row["output"] = out
            rows.append(row)
        except ExpressionLimitError as exc:
            raise ExpressionLimitError(f"step {step.id!r}: {exc}", exc.expression) from None
    return rows


def render_plan(plan: Plan, rows: list[dict[str, Any]]) -> str:
    lines = [f"Plan for {plan.name} — {plan.runbook.title} ({plan.runbook.severity}), {len(rows)} steps", ""]
    for row in rows:
        kind = "MUTATING" if row["mutating"] else "read-only"
        head = f"{row['n']:>2}. {row['id']}  [{row['action'] or 'approval'}]  {kind}"
        if row["needs"]:
            head += f"  needs: {', '.join(row['needs'])}"
        lines.append(head)
        lines.append(f"    {row['title']}")
        if row["when"]:
            lines.append(f"    {row['when']}")
        if row["note"]:
            lines.append(f"    {row['note']}")
        fo = row["fan_out"]
        if fo:
            count = fo["count"] if fo["count"] is not None else "?"
            lines.append(f"    fan-out over {fo['over']}: {count} item(s), concurrency {fo['concurrency']}")
        for call in row["calls"]:
            prefix = f"    - [{call['item']}] " if call["item"] is not None else "    - "
            lines.append(prefix + json.dumps(call["with"], default=str, ensure_ascii=False))
            for op in call.get("operations", []):
                res = ", ".join(op.get("resources", []))
                where = "/".join(x for x in (op.get("account"), op.get("region")) if x)
                lines.append(f"        would call {op['service']}:{op['operation']}"
                             + (f" in {where}" if where else "") + (f" on {res}" if res else ""))
            if call.get("note"):
                lines.append(f"        {call['note']}")
        if row["fan_out"] and row["fan_out"]["count"] == 0:
            lines.append("    (no items: the step will do nothing)")
        lines.append("")
    return "\n".join(lines)
