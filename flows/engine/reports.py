"""Status reports and the post-mortem, rendered with sandboxed Jinja2 (StrictUndefined).

Owns: the report environment, ``render_step_report`` (one markdown report per step), and
``postmortem_context``/``render_postmortem`` (the post-mortem, always re-rendered from the
timeline, never edited in place). Default templates live in ``flows/engine/templates/``; a runbook
may override the step report (runbook- or step-level ``report:``) and the post-mortem.

Rendering is bounded (``flows.engine.limits``: time, loop iterations, sizes, output length) and never
raises anything but ``ReportError``: a template that divides by zero, overflows, recurses, is
refused by the sandbox or goes past a limit gives a ``ReportError`` naming the template, and
``fallback_report`` / ``render_postmortem_safely`` turn that into a report that says so.

Must not touch: Prefect, boto3, Slack. Values are redacted by the caller before rendering.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError, TemplateNotFound, TemplateSyntaxError

from flows.engine.limits import LIMITS, BoundedSandbox, LimitExceeded, budget, tojson
from flows.engine.spec.templates import configured_template_dirs, inside
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


def _scalar(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _detail_value(key: str, value: Any) -> str:
    if isinstance(value, list):
        if not value:
            return f"{key}: none"
        shown = ", ".join(_scalar(v) if not isinstance(v, dict) else _detail_dict(v) for v in value[:10])
        more = f", … (+{len(value) - 10})" if len(value) > 10 else ""
        return f"{key} ({len(value)}): {shown}{more}"
    if isinstance(value, dict):
        return f"{key}: {{{_detail_dict(value)}}}"
    return f"{key}: {_scalar(value)}"


def _detail_dict(value: dict[str, Any]) -> str:
    return "; ".join(_detail_value(k, v) for k, v in value.items() if v is not None)


def event_detail(event: dict[str, Any], limit: int = 600) -> str:
    """The decisive fields of a timeline event, in full (a table cell): who decided an approval and
    their comment, why something failed or was skipped, and an output's ids and counts (a list shows
    its length and its first ten entries; nested values are spelled out, never ``{…}``)."""
    data = event.get("data") or {}
    kind = event.get("kind", "")
    parts: list[str] = []
    if kind.startswith("approval."):
        if data.get("approver"):
            parts.append(f"by {data['approver']}")
        if data.get("approved_by"):
            parts.append("approved by " + ", ".join(map(str, data["approved_by"])))
        if data.get("approvers"):
            parts.append(f"asks {', '.join(map(str, data['approvers']))} "
                         f"({data.get('min_approvals', 1)} needed) until {data.get('expires_at', '?')}")
        for key in ("comment", "reason", "message"):
            if data.get(key):
                parts.append(f"{key}: {_scalar(data[key])}")
    else:
        for key in ("error", "reason", "recipient", "outcome", "title"):
            if data.get(key):
                shown = _scalar(data[key])
                parts.append(shown if key in ("error", "reason", "title") else f"{key}: {shown}")
                break
        output = data.get("output")
        if isinstance(output, dict):
            parts.append(_detail_dict(output))
        elif output not in (None, "", [], {}):
            parts.append(_scalar(output) if not isinstance(output, list) else _detail_value("items", output))
        if not parts and data.get("message"):
            parts.append(_scalar(data["message"]))
    text = " — ".join(p for p in parts if p)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_DUE_DAYS = {"sev0": 7, "sev1": 7, "sev2": 14}
_DETECTION_KEYS = ("live_from", "published", "published_at", "advisory_published")


def _find_times(value: Any, found: dict[str, str], depth: int = 0) -> None:
    """First ``live_from`` / ``published`` timestamps anywhere in step outputs (depth <= 3)."""
    if depth > 3:
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if k in _DETECTION_KEYS and isinstance(v, str) and v:
                found.setdefault("live_from" if k == "live_from" else "published", v)
            else:
                _find_times(v, found, depth + 1)
    elif isinstance(value, list):
        for v in value[:20]:
            _find_times(v, found, depth + 1)


def _maybe_ts(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo is not None else None


def _waiting_for_people(events: list[dict[str, Any]]) -> float:
    """Seconds between each approval request and its last decision (granted/denied/expired)."""
    asked: dict[str, datetime] = {}
    total = 0.0
    for e in events:
        if e["kind"] == "approval.requested" and e.get("step"):
            asked[e["step"]] = _parse_ts(e["ts"])
        elif e["kind"] in ("approval.granted", "approval.denied", "approval.expired") and e.get("step") in asked:
            total += (_parse_ts(e["ts"]) - asked.pop(e["step"])).total_seconds()
    return total


_NOTIFY_FAMILIES = ("slack.", "aws.ses.", "aws.sns.")  # telling people is not containing anything


def _z(ts: datetime | None) -> str | None:
    return ts.isoformat().replace("+00:00", "Z") if ts else None


def _exposure(assets: dict[str, list[dict[str, Any]]], mutating: set[str], since: datetime | None,
              basis: str) -> list[dict[str, Any]]:
    """Per asset (service, user, key…): from the exposure start to the moment its last containment
    action (an item of a mutating step that is not a notification) succeeded; ``not contained``
    when none did."""
    rows = []
    for asset, actions in assets.items():
        done = [_parse_ts(a["ts"]) for a in actions if a["status"] == "succeeded" and a["step"] in mutating]
        until = max(done) if done else None
        rows.append({"asset": asset, "since": _z(since), "basis": basis, "until": _z(until),
                     "duration": _duration((until - since).total_seconds()) if (until and since) else
                     ("not contained" if until is None else "unknown")})
    return rows


def _generic_summary(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """What a run changed (per action family, with the targets), what failed, what is left to do:
    the summary of every runbook that does not write its own."""
    changed: OrderedDict[str, list[str]] = OrderedDict()
    for s in steps:
        items = [i["item"] for i in s["items"] if i["status"] == "succeeded" and i["item"]]
        if not s["mutating"] or not s["action"] or (s["status"] != "succeeded" and not items):
            continue  # a failed for_each step still changed the items it finished
        family = s["action"].rsplit(".", 1)[0]
        what = (f"on {', '.join(map(str, items[:10]))}{', …' if len(items) > 10 else ''}" if items
                else _detail_dict(s["output"]) if isinstance(s["output"], dict)
                else _compact(s["output"], 240) if s["output"] not in (None, "", []) else "")
        changed.setdefault(family, []).append(f"{s['title']} (`{s['id']}`)" + (f": {what}" if what else ""))
    failed = [f"{s['title']} (`{s['id']}`): {_compact(s['error'] or 'failed', 240)}"
              for s in steps if s["status"] == "failed"]
    failed += [f"{s['title']} (`{s['id']}`) on {i['item']}: {i['detail']}"
               for s in steps for i in s["items"] if i["status"] == "failed"]
    left = [f"finish `{s['id']}` ({s['title']})" for s in steps if s["status"] == "failed"]
    left += [f"decide whether `{s['id']}` ({s['title']}) is still needed (skipped: {_compact(s['error'], 160)})"
             for s in steps if s["status"] == "skipped" and s["error"] and "if" not in s["error"]]
    left += [f"`{s['id']}` ({s['title']}) did not run" for s in steps if s["status"] == "not run"]
    return {"changed": changed, "failed": failed, "left": left}


def _utc_text(ts: str) -> str:
    return ts.replace("T", " ").replace("Z", " UTC")


# -- where templates may be loaded from (defence in depth behind validate's RB117) -------------

_PSEUDO_FS = (Path("/proc"), Path("/sys"), Path("/dev"))


def check_template_path(path: Path, roots: list[Path] | None = None) -> Path:
    """The real path of template ``path``, or ``ReportError`` when it must not be loaded.

    Refused: ``..`` components, files under /proc, /sys, /dev, anything that is not a regular
    file, and a path that resolves (symlinks followed) outside ``roots`` (default: its own
    folder), the built-in templates and ``STANCH_TEMPLATE_DIRS``. The message never shows the
    file's content.
    """
    if ".." in path.parts:
        raise ReportError(f"{path}: report template path must not contain '..'")
    real = path.resolve()
    allowed = [*(roots if roots is not None else [path.absolute().parent]), TEMPLATES, *configured_template_dirs()]
    if any(real.is_relative_to(p) for p in _PSEUDO_FS) or not inside(real, allowed):
        raise ReportError(f"{path}: report template resolves to {real}, outside the allowed template folders")
    if not real.is_file():
        raise ReportError(f"{path}: report template is not a regular file")
    return real


class _ConfinedLoader(FileSystemLoader):
    """``FileSystemLoader`` whose ``include``/``extends``/``import`` targets pass ``check_template_path``."""

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Any]:
        source, filename, uptodate = super().get_source(environment, template)
        try:
            check_template_path(Path(filename), [Path(p) for p in self.searchpath])
        except ReportError:
            raise TemplateNotFound(template) from None
        return source, filename, uptodate


def make_environment(search: list[Path]) -> BoundedSandbox:
    env = BoundedSandbox(
        loader=_ConfinedLoader([str(p) for p in search]),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.add_filter("duration", _duration)
    env.add_filter("compact", _compact)
    env.add_filter("detail", event_detail)
    env.add_filter("utc", _utc_text)
    env.add_filter("tojson", lambda v, indent=2: tojson(v, indent, sort_keys=False, ensure_ascii=True))
    return env


def _template_line(exc: BaseException, path: Path) -> int | None:
    """The template line an exception was raised at (Jinja maps its frames to template lines)."""
    if isinstance(exc, TemplateSyntaxError):
        return exc.lineno
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == str(path):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render_template(path: Path, context: dict[str, Any]) -> str:
    """Render one template file, bounded; every failure is a ``ReportError`` naming it."""
    path = check_template_path(path)
    env = make_environment([path.parent, TEMPLATES])
    try:
        with budget(f"template {path.name}", LIMITS.template_seconds):
            out: list[str] = []
            size = 0
            for chunk in env.get_template(path.name).generate(**context):
                size += len(chunk)
                if size > LIMITS.output_chars:
                    raise LimitExceeded(f"output exceeds the limit of {LIMITS.output_chars:,} characters")
                out.append(chunk)
            return "".join(out)
    except Exception as exc:  # anything a template can raise: syntax, undefined, sandbox, limits, arithmetic
        lineno = _template_line(exc, path)
        where = f"{path}:{lineno}" if lineno else str(path)
        if isinstance(exc, TemplateSyntaxError) and exc.message:
            detail = exc.message
        elif isinstance(exc, TemplateError | StanchError):
            detail = str(exc)
        else:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise ReportError(f"{where}: report template error: {detail}") from None


def fallback_report(title: str, status: str, error: ReportError, context: dict[str, Any],
                    default: Path = DEFAULT_STEP_REPORT) -> str:
    """What a step report says when its template failed: which template, why, then the default
    report (or only the first two when the default cannot render either)."""
    head = f"# {title} — {status.upper()}\n\n> **The report template failed**: {error}\n"
    try:
        return head + "\n" + render_template(default, context)
    except ReportError:
        return head


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
    inputs = (started or {}).get("data", {}).get("inputs", {}) or {}
    times: dict[str, str] = {}
    if isinstance(inputs.get("live_from"), str) and inputs["live_from"]:
        times["live_from"] = inputs["live_from"]
    for s in steps.values():
        _find_times(s["output"], times)
    live_from, published = _maybe_ts(times.get("live_from")), _maybe_ts(times.get("published"))
    detected_from = live_from or published
    ttd = (start_ts - detected_from).total_seconds() if (detected_from and start_ts) else None
    ttc_detect = (last_containment - detected_from).total_seconds() if (detected_from and last_containment) else None
    waiting = _waiting_for_people(events)
    exposure = _exposure(assets, {s["id"] for s in steps.values() if s["mutating"]
                                  and not str(s["action"] or "").startswith(_NOTIFY_FAMILIES)},
                         detected_from or start_ts,
                         "live_from" if live_from else "advisory published" if published else "run start")
    total = (end_ts - start_ts).total_seconds() if (start_ts and end_ts) else None
    severity = str(plan_json.get("severity") or "")
    due_days = _DUE_DAYS.get(severity.lower(), 30)
    due = (start_ts + timedelta(days=due_days)).date().isoformat() if start_ts else f"+{due_days} days"
    owner = plan_json.get("owner") or "unassigned"
    incident_id = (started or {}).get("data", {}).get("incident_id") or plan_json.get("incident_id", "")
    action_items = [{"item": f"Finish `{s['id']}` ({s['title']}) by hand or with `stanch resume {incident_id}`: "
                             f"{s['error']}",
                     "owner": owner, "due": due} for s in failed]
    action_items += [{"item": f"Confirm with {n['to']} whether the {n['sink']} notification of `{n['step']}` arrived",
                      "owner": owner, "due": due} for n in possibly_sent]
    action_items += [{"item": f"Fix the cause of the retries of `{r['step']}`: {r['error']}", "owner": owner,
                      "due": due} for r in retries[:3]]
    action_items.append({"item": f"Hold the blameless post-mortem review ({severity or 'no severity'})",
                         "owner": owner, "due": due})
    detection = {
        "live_from": times.get("live_from"),
        "published": times.get("published"),
        "basis": ("exposure start (live_from)" if live_from else
                  "advisory publication" if published else None),
        "time_to_detect": _duration(ttd) if ttd is not None else "unknown (no live_from or advisory time)",
        "time_to_contain": _duration(ttc_detect) if ttc_detect is not None else (
            "not contained" if last_containment is None else "unknown"),
        "how": f"{(started or {}).get('actor', 'stanch')} started runbook `{plan_json.get('runbook')}`",
    }
    return {
        "detection": detection,
        "exposure": exposure,
        "summary": _generic_summary(list(steps.values())),
        "action_items": action_items,
        "effort": {"people": _duration(waiting) if waiting else "0 ms",
                   "machines": _duration(max(0.0, total - waiting)) if total is not None else "—"},
        "incident": {
            "id": (started or {}).get("data", {}).get("incident_id") or plan_json.get("incident_id", ""),
            "runbook": plan_json.get("runbook"),
            "title": plan_json.get("title"),
            "severity": plan_json.get("severity"),
            "owner": owner,
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


def render_postmortem_safely(events: list[dict[str, Any]], plan_json: dict[str, Any],
                             template: Path | None = None) -> tuple[str, str | None]:
    """(post-mortem text, why the runbook's template failed or None). Never raises: a failed
    template gives the default post-mortem under a note naming the template and the error."""
    context = postmortem_context(events, plan_json)
    try:
        return render_template(template or DEFAULT_POSTMORTEM, context), None
    except ReportError as exc:
        problem = str(exc)
    note = f"> **The post-mortem template failed**: {problem}\n\n"
    try:
        body = render_template(DEFAULT_POSTMORTEM, context) if template is not None else ""
    except ReportError:
        body = ""
    if not body:
        inc = context["incident"]
        body = (f"# Post-mortem — {inc['id']}\n\nRunbook {inc['runbook']}, outcome **{inc['outcome']}**; "
                "the timeline (timeline.jsonl) is the record.\n")
    return note + body, problem
