"""Status reports and the post-mortem, rendered with sandboxed Jinja2 (StrictUndefined).

Owns: the report environment, ``render_step_report`` (one markdown report per step), and
``postmortem_context``/``render_postmortem`` (the post-mortem, always re-rendered from the
timeline, never edited in place). Default templates live in ``flows/templates/``; a runbook
may override the step report (runbook- or step-level ``report:``) and the post-mortem.

Must not touch: Prefect, boto3, Slack. Values are redacted by the caller before rendering.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from integrations.errors import StanchError

TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_STEP_REPORT = TEMPLATES / "step.md.j2"
DEFAULT_POSTMORTEM = TEMPLATES / "postmortem.md.j2"


class ReportError(StanchError):
    code = "RP000"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = float(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 120:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _compact(value: Any, limit: int = 160) -> str:
    """A one-line summary of an output value for tables."""
    if isinstance(value, dict):
        parts = []
        for k, v in value.items():
            if isinstance(v, list):
                shown = ", ".join(str(x) if not isinstance(x, dict) else "{…}" for x in v[:5])
                parts.append(f"{k}: [{shown}{', …' if len(v) > 5 else ''}]")
            elif isinstance(v, dict):
                parts.append(f"{k}: {{…}}")
            elif v is not None:
                parts.append(f"{k}: {v}")
        text = "; ".join(parts)
    elif isinstance(value, list):
        text = ", ".join(str(v) for v in value)
    else:
        text = str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _utc_text(ts: str) -> str:
    return ts.replace("T", " ").replace("Z", " UTC")


def make_environment(search: list[Path]) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        loader=FileSystemLoader([str(p) for p in search]),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["duration"] = _duration
    env.filters["compact"] = _compact
    env.filters["utc"] = _utc_text
    env.filters["tojson"] = lambda v, indent=2: json.dumps(v, indent=indent, default=str, sort_keys=False)
    return env


def render_template(path: Path, context: dict[str, Any]) -> str:
    env = make_environment([path.parent, TEMPLATES])
    try:
        return env.get_template(path.name).render(**context)
    except TemplateError as exc:
        lineno = getattr(exc, "lineno", None)
        where = f"{path}:{lineno}" if lineno else str(path)
        raise ReportError(f"{where}: report template error: {exc}") from None


def render_step_report(template: Path | None, context: dict[str, Any]) -> str:
    return render_template(template or DEFAULT_STEP_REPORT, context)


def _parse_ts(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def postmortem_context(events: list[dict[str, Any]], plan_json: dict[str, Any]) -> dict[str, Any]:
    """Everything a post-mortem template needs, derived from the timeline alone."""
    started = next((e for e in events if e["kind"] == "run.started"), None)
    finished = next((e for e in reversed(events) if e["kind"] == "run.finished"), None)
    steps: OrderedDict[str, dict[str, Any]] = OrderedDict()
    for s in plan_json.get("steps", []):
        steps[s["id"]] = {"id": s["id"], "title": s["title"], "action": s["action"], "status": "not run",
                          "mutating": s.get("mutating", False), "retries": 0, "error": None,
                          "output": None, "duration": None, "items": []}
    assets: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
    retries: list[dict[str, Any]] = []
    slack_problems: list[dict[str, Any]] = []
    compensations: list[dict[str, Any]] = []
    last_containment: datetime | None = None
    for e in events:
        kind, sid, data = e["kind"], e.get("step"), e.get("data") or {}
        step = steps.get(sid) if sid else None
        if kind == "step.succeeded" and step is not None:
            step.update(status="succeeded", output=data.get("output"), duration=data.get("duration_s"))
            if step["mutating"]:
                last_containment = _parse_ts(e["ts"])
        elif kind == "step.failed" and step is not None:
            step.update(status="failed", error=data.get("error"), duration=data.get("duration_s"))
        elif kind == "step.skipped" and step is not None:
            step.update(status="skipped", error=data.get("reason"))
        elif kind == "item.retrying":
            retries.append({"step": sid, "item": e.get("item"), "error": data.get("error")})
            if step is not None:
                step["retries"] += 1
        elif kind in ("item.succeeded", "item.failed") and step is not None:
            asset = e.get("item") or data.get("asset")
            entry = {"ts": e["ts"], "step": sid, "title": step["title"],
                     "status": "succeeded" if kind == "item.succeeded" else "failed",
                     "detail": _compact(data.get("output") if kind == "item.succeeded" else data.get("error"))}
            step["items"].append({"item": asset, **entry})
            if asset:
                assets.setdefault(asset, []).append(entry)
        elif kind == "slack.unavailable":
            slack_problems.append({"ts": e["ts"], "error": data.get("error")})
        elif kind.startswith("compensation."):
            compensations.append({"ts": e["ts"], "step": sid, "kind": kind.split(".", 1)[1],
                                  "action": data.get("action"), "detail": _compact(data.get("output")
                                                                                   or data.get("error") or "")})
    possibly_sent = _unconfirmed_sends(events)
    start_ts = _parse_ts(started["ts"]) if started else None
    end_ts = _parse_ts(finished["ts"]) if finished else None
    ttc = (last_containment - start_ts).total_seconds() if (last_containment and start_ts) else None
    outcome = (finished or {}).get("data", {}).get("outcome", "in progress")
    failed = [s for s in steps.values() if s["status"] == "failed"]
    went_well = [f"{s['title']} ({s['id']}) succeeded in {_duration(s['duration'])}"
                 + (" on the first attempt" if not s["retries"] else f" after {s['retries']} retr"
                    + ("y" if s["retries"] == 1 else "ies"))
                 for s in steps.values() if s["status"] == "succeeded" and s["mutating"]]
    went_badly = [f"{s['title']} ({s['id']}) failed: {s['error']}" for s in failed]
    went_badly += [f"{r['step']}{'[' + r['item'] + ']' if r['item'] else ''} hit a transient error and was "
                   f"retried: {r['error']}" for r in retries]
    went_badly += [f"Slack was unavailable at {p['ts']}: {p['error']}" for p in slack_problems]
    went_badly += [f"{s['title']} ({s['id']}) was skipped: {s['error']}"
                   for s in steps.values() if s["status"] == "skipped" and s["error"]
                   and "if" not in (s["error"] or "")]
    return {
        "incident": {
            "id": (started or {}).get("data", {}).get("incident_id") or plan_json.get("incident_id", ""),
            "runbook": plan_json.get("runbook"),
            "title": plan_json.get("title"),
            "severity": plan_json.get("severity"),
            "drill": (started or {}).get("data", {}).get("drill", False),
            "inputs": (started or {}).get("data", {}).get("inputs", {}),
            "initiator": (started or {}).get("actor", "stanch"),
            "started_at": started["ts"] if started else None,
            "finished_at": finished["ts"] if finished else None,
            "duration": _duration((end_ts - start_ts).total_seconds()) if (start_ts and end_ts) else "—",
            "outcome": outcome,
            "time_to_contain": _duration(ttc) if ttc is not None else "not contained",
        },
        "steps": list(steps.values()),
        "outputs": {sid: s["output"] for sid, s in steps.items()},
        "assets": assets,
        "events": events,
        "failed": failed,
        "compensations": compensations,
        "went_well": went_well,
        "went_badly": went_badly,
        "slack_problems": slack_problems,
        "possibly_sent": possibly_sent,
    }


def _unconfirmed_sends(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Notifications started but never confirmed (``intent.recorded`` whose last settlement is
    none or ``possibly_sent``): a crash came between the send and its record and the sink could not
    be asked (e-mail) — by the at-most-once policy they were not sent again."""
    intents: OrderedDict[str, dict[str, Any]] = OrderedDict()
    for e in events:
        data = e.get("data") or {}
        key = data.get("key")
        if e["kind"] == "intent.recorded" and key:
            intents[key] = {"ts": e["ts"], "step": e.get("step"), "item": e.get("item"),
                            "sink": data.get("sink"), "to": data.get("recipient") or data.get("channel"),
                            "policy": data.get("policy"), "state": "open"}
        elif e["kind"] == "intent.settled" and isinstance(key, str) and key in intents:
            intents[key]["state"] = data.get("outcome")
    return [i for i in intents.values() if i["state"] in ("open", "possibly_sent")]


def render_postmortem(events: list[dict[str, Any]], plan_json: dict[str, Any],
                      template: Path | None = None) -> str:
    return render_template(template or DEFAULT_POSTMORTEM, postmortem_context(events, plan_json))
