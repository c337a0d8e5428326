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

import re
import shlex
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError, TemplateNotFound, TemplateSyntaxError

from flows.engine.limits import LIMITS, BoundedSandbox, LimitExceeded, budget, tojson
from flows.engine.runbooks import REPO_RUNBOOKS
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
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


LONG_TEXT = 300
"""A string value longer than this is cut with "…" in tables: only free text is that long (ids,
ARNs, fingerprints and addresses are shorter and always shown in full)."""
LIST_SHOWN = 50
"""List entries shown in a table cell before "… and N more" (the timeline has them all)."""
_QUIET = frozenset({"key", "ts", "thread_ts", "duration_s", "attempts", "compensation", "part", "incident_id",
                    "signature", "continue_on_error", "decision"})
"""Event fields that are bookkeeping, not what happened (intent keys, Slack timestamps, timings)."""


def _scalar(value: Any, limit: int | None = LONG_TEXT) -> str:
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def _entry(value: Any) -> str:
    return "{" + _detail_dict(value) + "}" if isinstance(value, dict) else _scalar(value)


def _detail_value(key: str, value: Any) -> str:
    if isinstance(value, list):
        if not value:
            return f"{key}: none"
        shown = ", ".join(_entry(v) for v in value[:LIST_SHOWN])
        more = f", … and {len(value) - LIST_SHOWN} more" if len(value) > LIST_SHOWN else ""
        return f"{key} ({len(value)}): {shown}{more}"
    if isinstance(value, dict):
        return f"{key}: {{{_detail_dict(value)}}}" if value else f"{key}: none"
    return f"{key}: {_scalar(value)}"


def _detail_dict(value: dict[str, Any]) -> str:
    return "; ".join(_detail_value(k, v) for k, v in value.items() if v is not None)


def _compact(value: Any, limit: int | None = None) -> str:
    """An output value on one line for a table cell, nested values spelled out (never ``{…}``):
    ``sent (3): {recipient: a@x; message_id: …}, …``. ``limit`` cuts the whole line (free text only)."""
    if isinstance(value, dict):
        text = _detail_dict(value)
    elif isinstance(value, list):
        text = ", ".join(_entry(v) for v in value[:LIST_SHOWN]) + (
            f", … and {len(value) - LIST_SHOWN} more" if len(value) > LIST_SHOWN else "")
    else:
        text = _scalar(value, None)
    text = text.replace("\n", " ")
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def event_detail(event: dict[str, Any], limit: int | None = None) -> str:
    """The decisive fields of a timeline event, in full (a table cell): who decided an approval and
    their comment; why something failed or was skipped (free text, cut at ``LONG_TEXT``); an
    output's ids and counts with nested values spelled out; and for an event without those (a key
    deactivated, an e-mail sent, a run finished) its own fields — key ids, recipients, outcome —
    without the bookkeeping (``_QUIET``)."""
    data = event.get("data") or {}
    kind = event.get("kind", "")
    parts: list[str] = []
    if kind == "checkpoint.signed":  # what was signed, as the witnesses (Slack, Prefect) show it
        return (f"{data.get('label', '?')}: seq {data.get('seq', '?')} sha256 {data.get('hash', '?')} "
                f"(key {data.get('key', '?')})")
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
        lead = next((data[k] for k in ("error", "reason", "title") if data.get(k)), None)
        if lead is not None:
            parts.append(_scalar(lead))
        output = data.get("output")
        if (kind == "step.succeeded" and isinstance(output, dict) and isinstance(output.get("items"), dict)
                and "succeeded" in output):  # a fan-out: each item has its own item.succeeded row, in full
            output = {k: v for k, v in output.items() if k != "items"}
        if isinstance(output, dict) and output:
            parts.append(_detail_dict(output))
        elif isinstance(output, list) and output:
            parts.append(_detail_value("items", output))
        elif output not in (None, "", [], {}):
            parts.append(_scalar(output))
        if not parts:
            own = {k: v for k, v in sorted(data.items(), key=lambda kv: not _is_id(kv[0]))  # ids first
                   if k not in _QUIET and v not in (None, "")}
            if own:
                parts.append(_detail_dict(own))
    text = " — ".join(p for p in parts if p)
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def _is_id(key: str) -> bool:
    return key == "id" or key.endswith(("_id", "_ids", "_arn"))


_CHANGE_FLAGS = frozenset({"changed", "deactivated", "reactivated", "attached", "detached", "deleted", "removed",
                           "published", "rotated", "revoked", "restored", "shifted", "created", "replaced",
                           "disabled", "enabled", "cancelled", "sent"})
"""Output fields through which actions say what they changed (``deactivated: False``, ``deleted: []``)."""


def changed_nothing(output: Any) -> bool:
    """True when an action's output says it found everything already as wanted: it has change
    flags (``_CHANGE_FLAGS`` holding a bool or a list) and every one is false or empty. An output
    without such flags (a Slack post, a certificate re-import) counts as a change."""
    if not isinstance(output, dict):
        return False
    flags = [v for k, v in output.items() if k in _CHANGE_FLAGS and isinstance(v, bool | list)]
    return bool(flags) and not any(flags)


def _benign_skip(step: dict[str, Any], steps: dict[str, dict[str, Any]], depth: int = 0) -> bool:
    """A skip that is no problem: a ``when:``/``if:`` condition that did not hold (an
    ``on_failure`` step in a run that did not fail is the good outcome), or a step that needed
    one skipped that way. A declined approval and what needed it are decisions, not failures."""
    reason = str(step.get("error") or "")
    if step.get("declined") or reason.startswith("condition is false") or "(when: " in reason:
        return True
    m = re.fullmatch(r"needed step '(.+)' was skipped", reason)
    if m and m.group(1) in steps and depth < 50:
        return _benign_skip(steps[m.group(1)], steps, depth + 1)
    return False


def _declined_upstream(step: dict[str, Any], steps: dict[str, dict[str, Any]], depth: int = 0) -> bool:
    if step.get("declined"):
        return True
    m = re.fullmatch(r"needed step '(.+)' was skipped", str(step.get("error") or ""))
    return bool(m and m.group(1) in steps and depth < 50 and _declined_upstream(steps[m.group(1)], steps, depth + 1))


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
            # asked again after a resume or a take-over: people have been waited for since the first ask
            asked.setdefault(e["step"], _parse_ts(e["ts"]))
        elif e["kind"] in ("approval.granted", "approval.denied", "approval.expired") and e.get("step") in asked:
            total += (_parse_ts(e["ts"]) - asked.pop(e["step"])).total_seconds()
    return total


def _interruptions(events: list[dict[str, Any]]) -> list[str]:
    """Each time the run stopped before finishing and was resumed (``stanch resume``, a worker's
    take-over): the stop's cause when one was recorded (``run.aborted``), else what leaves no trace."""
    lines, cause = [], None
    for e in events:
        if e["kind"] == "run.aborted":
            cause = str((e.get("data") or {}).get("error") or "aborted")
        elif e["kind"] == "run.resumed":
            why = f"was interrupted ({cause})" if cause else \
                "was interrupted without a trace (a crash, a killed process or a lost worker)"
            lines.append(f"The run {why} and was resumed at {e['ts']}; steps and items already done "
                         "were not repeated")
            cause = None
    return lines


NOTIFY_FAMILIES = ("slack.", "aws.ses.", "aws.sns.")  # telling people is not containing anything


def _z(ts: datetime | None) -> str | None:
    """The timeline's own form (milliseconds, ``Z``; whole seconds as given, like an input's
    ``live_from``), so every time in the post-mortem reads alike."""
    if ts is None:
        return None
    spec = "seconds" if ts.microsecond == 0 else "milliseconds"
    return ts.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")


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
    """What a run changed (per action family, with the targets), what it found already done, what
    failed, what is left to do: the summary of every runbook that does not write its own. A step
    (or fan-out item) whose output says it changed nothing (``changed_nothing``) is not a change."""
    by_id = {s["id"]: s for s in steps}
    changed: OrderedDict[str, list[str]] = OrderedDict()
    unchanged: list[str] = []
    for s in steps:
        done = [i for i in s["items"] if i["status"] == "succeeded" and i["item"]]
        if not s["mutating"] or not s["action"] or (s["status"] != "succeeded" and not done):
            continue  # a failed for_each step still changed the items it finished
        items = [i["item"] for i in done if not changed_nothing(i.get("output"))]
        if (done and not items) or (not done and changed_nothing(s["output"])):
            unchanged.append(f"{s['title']} (`{s['id']}`)")
            continue
        family = s["action"].rsplit(".", 1)[0]
        what = (f"on {', '.join(map(str, items[:LIST_SHOWN]))}{', …' if len(items) > LIST_SHOWN else ''}" if items
                else _detail_dict(s["output"]) if isinstance(s["output"], dict)
                else _compact(s["output"], LONG_TEXT) if s["output"] not in (None, "", []) else "")
        changed.setdefault(family, []).append(f"{s['title']} (`{s['id']}`)" + (f": {what}" if what else ""))
    failed = [f"{s['title']} (`{s['id']}`): {_compact(s['error'] or 'failed', LONG_TEXT)}"
              for s in steps if s["status"] == "failed"]
    failed += [f"{s['title']} (`{s['id']}`) on {i['item']}: {i['detail']}"
               for s in steps for i in s["items"] if i["status"] == "failed"]
    left = [f"finish `{s['id']}` ({s['title']})" for s in steps if s["status"] == "failed"]
    left += [f"decide whether `{s['id']}` ({s['title']}) is still needed (declined: {_compact(s['error'], 160)})"
             for s in steps if s["status"] == "skipped" and s.get("declined")]
    left += [f"`{s['id']}` ({s['title']}) did not run: {s['error']}" for s in steps
             if s["status"] == "skipped" and not _benign_skip(s, by_id)]
    left += [f"`{s['id']}` ({s['title']}) did not run" for s in steps if s["status"] == "not run"]
    return {"changed": changed, "unchanged": unchanged, "failed": failed, "left": left}


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


def rerun_command(plan_json: dict[str, Any], inputs: dict[str, Any], drill: bool) -> str:
    """``stanch run …`` with the incident's inputs: the runbook by name when it is a bundled one,
    else its path; a secret input as ``name=…`` (its value is never written down)."""
    source = str(plan_json.get("source") or "")
    name = str(plan_json.get("runbook") or "")
    try:
        path = Path(source)
        bundled = bool(source) and path.resolve().parent == REPO_RUNBOOKS.resolve() and path.stem == name
    except OSError:
        bundled = False
    words = ["stanch", "run", name if bundled or not source else source]
    if drill:
        words.append("--drill")
    for key, value in inputs.items():
        if isinstance(value, dict) and "$secret_ref" in value:
            words += ["--input", f"{key}=…"]
        elif value is not None:
            text = value if isinstance(value, str) else tojson(value, None, sort_keys=False, ensure_ascii=False)
            words += ["--input", f"{key}={text}"]
    return " ".join(w if w.endswith("=…") else shlex.quote(w) for w in words)


def _finish_advice(step: dict[str, Any], incident_id: str, rerun: str, resumable: bool) -> str:
    """The action item of a failed step: advice that works. A denied or expired approval is asked
    again by ``stanch resume`` (a failed gate is not a kept decision); once the run's
    compensations ran (or it was rolled back) resume is refused, so: a new run."""
    if step["approval"]:
        what = f"`{step['id']}` ({step['title']}) was {step['decision'] or step['error']}"
        again = (f"`stanch resume {incident_id}` asks the approvers again" if resumable else
                 f"start a new run with the same inputs: `{rerun}` (`stanch resume` is refused: this run's "
                 "compensations already undid its earlier steps)")
        return f"{what}. If the change is still needed, {again}."
    if resumable:
        how = f"fix the cause, then `stanch resume {incident_id}` continues from it (done steps are not repeated)"
    else:
        how = (f"by hand, or with a new run with the same inputs: `{rerun}` (`stanch resume` is refused: this "
               "run's compensations already undid its earlier steps)")
    return f"Finish `{step['id']}` ({step['title']}): {_scalar(step['error'] or 'failed')} — {how}"


def _outcome_line(outcome: str, ttc: float | None, ttc_detect: float | None) -> str:
    """The summary's one sentence on containment: "not contained" said once, plainly."""
    if outcome != "succeeded":
        return f"Outcome: **{outcome}**; not contained."
    if ttc is None:
        return f"Outcome: **{outcome}**; no step that changes things succeeded."
    since_detection = (f", {_duration(ttc_detect)} from detection" if ttc_detect is not None
                       else " (detection time unknown)")
    return f"Outcome: **{outcome}**; contained {_duration(ttc)} after the run's start{since_detection}."


def postmortem_context(events: list[dict[str, Any]], plan_json: dict[str, Any]) -> dict[str, Any]:
    """Everything a post-mortem template needs, derived from the timeline alone."""
    started = next((e for e in events if e["kind"] == "run.started"), None)
    finished = next((e for e in reversed(events) if e["kind"] == "run.finished"), None)
    steps: OrderedDict[str, dict[str, Any]] = OrderedDict()
    for s in plan_json.get("steps", []):
        steps[s["id"]] = {"id": s["id"], "title": s["title"], "action": s["action"], "status": "not run",
                          "mutating": s.get("mutating", False), "retries": 0, "error": None,
                          "output": None, "duration": None, "items": [], "approval": bool(s.get("approval")),
                          "declined": False, "decision": None}
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
            step.update(status="skipped", error=data.get("reason"), declined=bool(data.get("declined")))
        elif kind in ("approval.denied", "approval.expired") and step is not None:
            step["decision"] = (f"denied by {data.get('approver')}" + (f" ({data['comment']})" if data.get("comment")
                                                                         else "")
                                if kind == "approval.denied" else "expired: nobody decided in time")
        elif kind == "item.retrying":
            retries.append({"step": sid, "item": e.get("item"), "error": data.get("error")})
            if step is not None:
                step["retries"] += 1
        elif kind in ("item.succeeded", "item.failed") and step is not None:
            asset = e.get("item") or data.get("asset")
            entry = {"ts": e["ts"], "step": sid, "title": step["title"],
                     "status": "succeeded" if kind == "item.succeeded" else "failed",
                     "detail": _compact(data.get("output")) if kind == "item.succeeded" else _scalar(data.get("error"))}
            step["items"].append({"item": asset, "output": data.get("output"), **entry})
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
    went_badly += _interruptions(events)
    went_badly += [f"{s['title']} ({s['id']}) was skipped: {s['error']}"
                   for s in steps.values() if s["status"] == "skipped" and not _benign_skip(s, steps)]
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
                                  and not str(s["action"] or "").startswith(NOTIFY_FAMILIES)},
                         detected_from or start_ts,
                         "live_from" if live_from else "advisory published" if published else "run start")
    total = (end_ts - start_ts).total_seconds() if (start_ts and end_ts) else None
    severity = str(plan_json.get("severity") or "")
    due_days = _DUE_DAYS.get(severity.lower(), 30)
    due = (start_ts + timedelta(days=due_days)).date().isoformat() if start_ts else f"+{due_days} days"
    owner = plan_json.get("owner") or "unassigned"
    incident_id = (started or {}).get("data", {}).get("incident_id") or plan_json.get("incident_id", "")
    rerun = rerun_command(plan_json, inputs, bool((started or {}).get("data", {}).get("drill", False)))
    # what `stanch resume` would do (flows.engine.resume.resume_refusal): refused after a success,
    # a rollback, or once the run's compensations undid earlier steps; a declined gate stays declined
    resumable = (outcome not in ("succeeded", "in progress") and not compensations
                 and not any(e["kind"] == "rollback.started" for e in events))
    action_items = [{"item": _finish_advice(s, incident_id, rerun, resumable), "owner": owner, "due": due}
                    for s in failed]
    action_items += [{"item": f"Decide whether `{s['id']}` ({s['title']}) is still needed (declined: {s['error']}). "
                              f"`stanch resume` keeps that decision; if it is needed, start a new run with the same "
                              f"inputs: `{rerun}`", "owner": owner, "due": due}
                     for s in steps.values() if s["status"] == "skipped" and s["declined"]]
    action_items += [{"item": f"Confirm with {n['to']} whether the {n['sink']} notification of `{n['step']}` arrived",
                      "owner": owner, "due": due} for n in possibly_sent]
    action_items += [{"item": f"Fix the cause of the retries of `{r['step']}`: {r['error']}", "owner": owner,
                      "due": due} for r in retries[:3]]
    action_items.append({"item": f"Hold the blameless post-mortem review ({severity or 'no severity'})",
                         "owner": owner, "due": due})
    contained = outcome == "succeeded" and last_containment is not None
    detection = {
        "live_from": times.get("live_from"),
        "published": times.get("published"),
        "basis": ("exposure start (live_from)" if live_from else
                  "advisory publication" if published else None),
        "time_to_detect": _duration(ttd) if ttd is not None else "unknown (no live_from or advisory time)",
        "time_to_contain": (_duration(ttc_detect) if ttc_detect is not None else "unknown") if contained
        else "not contained",
        "how": f"{(started or {}).get('actor', 'stanch')} started runbook `{plan_json.get('runbook')}`",
    }
    signed = [e.get("data") or {} for e in events if e["kind"] == "checkpoint.signed"]
    return {
        "record": {"checkpoints": len(signed), "keys": sorted({str(d.get("key")) for d in signed if d.get("key")})},
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
            "time_to_contain": _duration(ttc) if (contained and ttc is not None) else "not contained",
            "outcome_line": _outcome_line(outcome, ttc if contained else None, ttc_detect if contained else None),
            "due": due,
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
