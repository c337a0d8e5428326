"""What ``/stanch …`` means, independent of Bolt and Prefect.

Owns: parsing the command text (``run RUNBOOK k=v…``, ``status``, ``list``, ``approve|deny``,
``help``), the help text, the de-duplication key of a Slack delivery and the seen-set that makes
a retried delivery start nothing, resolving a runbook *name* (never a path: Slack users cannot
point stanch at arbitrary files), who may start a runbook from Slack (``slack.allowed_users``,
``@group`` handles expanded through ``usergroups.users.list`` with a short cache), and rendering
incident status / the list of open incidents from the incident store — the folder, or the
PostgreSQL store itself (``flows.engine.incident_list``), so a replica that did not write an
incident lists it too.

Must not touch: Prefect, the Bolt app, the runtime. It reads the store; it writes only its own
seen-set file.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.engine.incident import Incident
from flows.engine.incident_list import digests, events_of
from flows.engine.timeline import read_events
from integrations.errors import InputError

RUNBOOK_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
INCIDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")
STEP_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

HELP_TEXT = """*stanch* — incident-response runbooks from Slack
• `/stanch run RUNBOOK key=value …` — validate the inputs and start a runbook (status updates arrive in the \
incident thread)
• `/stanch status [INCIDENT]` — where an incident stands (default: the latest one)
• `/stanch list` — open incidents (still running or waiting for approval)
• `/stanch approve INCIDENT STEP` / `/stanch deny INCIDENT STEP` — decide a gated step (same rules as the buttons)
• `/stanch help` — this text
Values with spaces: `key="two words"`. Who may start a runbook is its `slack.allowed_users` list."""

_SMART_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2018": "'", "\u2019": "'"})
SUBCOMMANDS = ("run", "status", "list", "approve", "deny", "help")
MAX_COMMAND_CHARS = 4000  # longer /stanch text is refused before it is split
MAX_WORDS = 100
CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,30}$")


@dataclass(frozen=True)
class Command:
    name: str
    args: tuple[str, ...] = ()


def parse_command(text: str) -> Command:
    """``run compromised-dependency advisory=MAL-2026-2307`` -> Command("run", (...)).

    Slack's clients turn quotes into typographic ones; they are folded back before splitting.
    Raises InputError with a one-line explanation for anything unreadable.
    """
    text = text or ""
    if len(text) > MAX_COMMAND_CHARS:
        raise InputError(f"the command is {len(text)} characters long; at most {MAX_COMMAND_CHARS} are accepted")
    text = text.translate(_SMART_QUOTES).strip()
    if not text:
        return Command("help")
    words = split_words(text)
    name, args = words[0].lower(), tuple(words[1:])
    if name not in SUBCOMMANDS:
        raise InputError(f"unknown command {words[0]!r} (try: {', '.join(SUBCOMMANDS)})")
    if name == "run":
        if not args:
            raise InputError("usage: /stanch run RUNBOOK key=value …")
        if not RUNBOOK_NAME.match(args[0]):
            raise InputError(f"{args[0]!r} is not a runbook name (lowercase letters, digits and '-'; "
                             "paths are not accepted from Slack)")
    elif name in ("approve", "deny"):
        if len(args) != 2:
            raise InputError(f"usage: /stanch {name} INCIDENT STEP")
        _check_incident_id(args[0])
        if not STEP_ID.match(args[1]):
            raise InputError(f"{args[1]!r} is not a step id")
    elif name == "status":
        if len(args) > 1:
            raise InputError("usage: /stanch status [INCIDENT]")
        if args:
            _check_incident_id(args[0])
    elif args:
        raise InputError(f"/stanch {name} takes no arguments")
    return Command(name, args)


_TOKEN = re.compile(r"""([^\s"'\\]+)|"([^"\\]*(?:\\.[^"\\]*)*)"|'([^']*)'|\\(.)|(\s+)|(["'\\])""", re.DOTALL)
_DQ_ESCAPE = re.compile(r'\\(["\\])')


def split_words(text: str) -> list[str]:
    """Shell-like splitting in one regex pass (``shlex`` is quadratic in the length of a word):
    blanks separate words, ``"…"`` and ``'…'`` group, a backslash escapes the next character (in
    double quotes only ``"`` and ``\\``). InputError for an unclosed quote or more than
    ``MAX_WORDS`` words."""
    words: list[str] = []
    cur: list[str] = []
    in_word = False
    for m in _TOKEN.finditer(text):
        plain, dq, sq, esc, blank, unclosed = m.groups()
        if blank is not None:
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
                if len(words) > MAX_WORDS:
                    raise InputError(f"the command has more than {MAX_WORDS} words")
            continue
        if unclosed is not None:  # a quote never closed, or a backslash at the very end
            problem = "No escaped character" if unclosed == "\\" else "No closing quotation"
            raise InputError(f"could not read the command: {problem}")
        in_word = True
        if plain is not None:
            cur.append(plain)
        elif dq is not None:
            cur.append(_DQ_ESCAPE.sub(r"\1", dq))
        elif sq is not None:
            cur.append(sq)
        elif esc is not None:
            cur.append(esc)
    if in_word:
        words.append("".join(cur))
    if len(words) > MAX_WORDS:
        raise InputError(f"the command has more than {MAX_WORDS} words")
    return words


def _check_incident_id(ref: str) -> None:
    if not INCIDENT_ID.match(ref) or ".." in ref:
        raise InputError(f"{ref!r} is not an incident id")


def resolve_runbook_name(name: str, dirs: Iterable[Path]) -> Path:
    """The runbook file called ``name`` in the first of ``dirs`` that has it; InputError otherwise."""
    if not RUNBOOK_NAME.match(name):
        raise InputError(f"{name!r} is not a runbook name")
    searched = [d for d in dirs if d.is_dir()]
    for base in searched:
        for ext in (".yaml", ".yml"):
            cand = base / f"{name}{ext}"
            if cand.is_file():
                return cand
    known = sorted({c.stem for base in searched for c in base.glob("*.y*ml") if RUNBOOK_NAME.match(c.stem)})
    raise InputError(f"no runbook named {name!r} (known: {', '.join(known) or 'none'})")


# ------------------------------------------------------------------------------ de-duplication
def dedupe_key(body: dict[str, Any]) -> str:
    """Same delivery (first try or Slack retry) -> same key; a new invocation -> a new key.

    ``trigger_id`` is unique per invocation/click, so two deliberate identical commands differ.
    """
    team = body.get("team_id") or (body.get("team") or {}).get("id") or ""
    channel = body.get("channel_id") or (body.get("channel") or {}).get("id") or ""
    user = body.get("user_id") or (body.get("user") or {}).get("id") or ""
    text = body.get("text")
    if text is None:  # interactions: the clicked action identifies the delivery
        actions = body.get("actions") or [{}]
        text = f"{actions[0].get('action_id', '')}:{actions[0].get('value', '')}:{actions[0].get('action_ts', '')}"
    parts = [str(team), str(channel), str(user), str(text), str(body.get("trigger_id") or "")]
    return "slack-" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


class SeenSet:
    """Delivery keys already handled, for ``ttl`` seconds; persisted to ``path`` when given, so
    an app restart between a delivery and Slack's retry still starts nothing twice. With a
    ``shared`` store (the PostgreSQL store, ``flows.store``), the claim is made in the database,
    so two Slack app replicas behind one URL agree on what they have already started."""

    def __init__(self, path: Path | None = None, ttl: float = 3600.0,
                 clock: Callable[[], float] = time.time, shared: Any = None) -> None:
        self.shared = shared
        self.path = path
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}
        if path is not None and path.exists():
            now = clock()
            for line in path.read_text(encoding="utf-8").splitlines():
                key, _, ts = line.partition(" ")
                try:
                    if now - float(ts) < ttl:
                        self._seen[key] = float(ts)
                except ValueError:
                    continue

    def claim(self, key: str) -> bool:
        """True the first time ``key`` is seen (the caller handles it), False for a repeat."""
        if self.shared is not None:
            return bool(self.shared.claim(key, self.ttl))
        now = self.clock()
        with self._lock:
            ts = self._seen.get(key)
            if ts is not None and now - ts < self.ttl:
                return False
            self._seen[key] = now
            if len(self._seen) > 10_000:
                self._seen = {k: v for k, v in self._seen.items() if now - v < self.ttl}
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(f"{key} {now:.3f}\n")
        return True

    def __contains__(self, key: str) -> bool:
        if self.shared is not None:
            return bool(self.shared.seen(key, self.ttl))
        with self._lock:
            ts = self._seen.get(key)
            return ts is not None and self.clock() - ts < self.ttl


# ------------------------------------------------------------------------------ authorization
class GroupDirectory:
    """``@handle`` -> member user ids, through a ``lookup`` (``SlackClient.usergroup_members``),
    cached for ``ttl`` seconds so clicks and commands do not each cost two Web API calls."""

    def __init__(self, lookup: Callable[[str], list[str]], ttl: float = 60.0) -> None:
        self.lookup = lookup
        self.ttl = ttl
        self._cache: dict[str, tuple[float, list[str]]] = {}
        self._lock = threading.Lock()

    def members(self, handle: str) -> list[str]:
        handle = handle.lstrip("@")
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(handle)
            if hit is not None and now - hit[0] < self.ttl:
                return hit[1]
        users = list(self.lookup(handle))
        with self._lock:
            self._cache[handle] = (now, users)
        return users

    def expand(self, entries: Iterable[str]) -> dict[str, list[str]]:
        """``{handle: members}`` for every ``@handle`` in ``entries`` (what approval_policy wants)."""
        return {e[1:]: self.members(e) for e in entries if e.startswith("@")}


def run_refusal(user_id: str, allowed: list[str], directory: GroupDirectory, runbook: str) -> str | None:
    """Why ``user_id`` may not start ``runbook`` from Slack, or None. An empty list allows nobody:
    starting containment from chat is opt-in per runbook (``slack.allowed_users``)."""
    if not allowed:
        return (f"runbook `{runbook}` cannot be started from Slack: it has no `slack.allowed_users` "
                "(ask its owner to add users or @groups)")
    if user_id in allowed:
        return None
    for entry in allowed:
        if entry.startswith("@") and user_id in directory.members(entry):
            return None
    return (f"<@{user_id}> is not allowed to start `{runbook}` "
            f"(allowed: {', '.join(allowed)})")


# ------------------------------------------------------------------------------ status / list
@dataclass
class IncidentSummary:
    id: str
    runbook: str = "?"
    drill: bool = False
    initiator: str = ""
    started: str = ""
    outcome: str | None = None  # None while open
    steps: dict[str, str] = field(default_factory=dict)  # step -> status
    pending_step: str | None = None
    last_event: str = ""

    @property
    def state(self) -> str:
        if self.outcome == "failed to start":
            return "*failed to start* — nothing ran (`stanch resume` starts it)"
        if self.outcome is not None:
            return "contained" if self.outcome == "succeeded" else f"finished: {self.outcome}"
        if self.pending_step:
            return f"waiting for approval of `{self.pending_step}`"
        return "running"


def summarize(folder: Path) -> IncidentSummary:
    return summarize_events(folder.name, read_events(folder / "timeline.jsonl"))


def summarize_events(incident_id: str, events: Iterable[dict[str, Any]]) -> IncidentSummary:
    s = IncidentSummary(incident_id)
    pending: dict[str, bool] = {}
    for e in events:
        kind, step = e.get("kind", ""), e.get("step")
        data = e.get("data") or {}
        s.last_event = e.get("ts", "")
        if kind == "run.started":
            s.outcome = None  # a start after a failed start (stanch resume)
            s.runbook = str(data.get("runbook", "?"))
            s.drill = bool(data.get("drill"))
            s.initiator = str(e.get("actor", ""))
            s.started = str(e.get("ts", ""))
        elif kind == "run.finished":
            s.outcome = str(data.get("outcome", "finished"))
        elif kind == "run.start_failed":  # nothing ran; `stanch resume` starts it
            s.runbook, s.initiator, s.outcome = str(data.get("runbook", "?")), str(e.get("actor", "")), \
                "failed to start"
        elif kind.startswith("step.") and step:
            s.steps[step] = kind.split(".", 1)[1]
        elif kind == "approval.requested" and step:
            pending[step] = True
        elif kind in ("approval.granted", "approval.denied", "approval.expired") and step:
            pending.pop(step, None)
    s.pending_step = list(pending)[-1] if pending else None
    return s


def open_incidents(store: Path) -> list[IncidentSummary]:
    """Incidents whose timeline has no ``run.finished`` yet (or that failed to start: they need
    someone to act), most recently active first. Decided from the run events alone; only the open
    ones are read whole."""
    candidates = [d for d in digests(store, ("run.",)) if d.problem is None
                  and summarize_events(d.id, d.events).outcome in (None, "failed to start")]
    candidates.sort(key=lambda d: d.active_at, reverse=True)
    return [s for s in (summarize_events(d.id, events_of(store, d.id)) for d in candidates)
            if s.outcome in (None, "failed to start")]


def latest_incident(store: Path) -> str | None:
    """The incident whose timeline moved last."""
    known = digests(store, ())
    return max(known, key=lambda d: d.active_at).id if known else None


_ICONS = {"succeeded": "✅", "failed": "❌", "skipped": "⏭️", "started": "⏳"}


def render_status(store: Path, incident_id: str, link: str | None = None) -> str:
    inc = Incident.open_existing(store, incident_id) if INCIDENT_ID.match(incident_id) else None
    if inc is None:
        raise InputError(f"{incident_id!r} is not an incident id")
    s = summarize(inc.folder)
    lines = [f"*{s.id}* · `{s.runbook}`{' · DRILL' if s.drill else ''} · {s.state}",
             f"started {s.started or '?'} by {s.initiator or '?'}"]
    for step, status in s.steps.items():
        lines.append(f"{_ICONS.get(status, '•')} `{step}` {status}")
    if link:
        lines.append(f"<{link}|Prefect run>")
    return "\n".join(lines)


def render_list(store: Path) -> str:
    items = open_incidents(store)
    if not items:
        return "No open incidents."
    return "\n".join([f"*Open incidents* ({len(items)})"] + [
        f"• *{s.id}* · `{s.runbook}`{' · DRILL' if s.drill else ''} · {s.state} · last event {s.last_event}"
        for s in items])


def approval_context(incident: Incident, step_id: str) -> dict[str, Any] | None:
    """The open ``approval.requested`` event of ``step_id`` plus who started the run and who has
    approved so far (for a quick, friendly pre-check; the run itself decides)."""
    requested: dict[str, Any] | None = None
    initiator = ""
    already: list[str] = []
    for e in incident.events():
        kind = e.get("kind", "")
        if kind == "run.started":
            initiator = str(e.get("actor") or (e.get("data") or {}).get("initiator") or "")
        if e.get("step") != step_id:
            continue
        if kind == "approval.requested":
            requested, already = e, []
        elif kind in ("approval.granted", "approval.denied", "approval.expired"):
            requested = None
        elif requested is not None and kind.startswith("approval.") and kind != "approval.refused":
            who = (e.get("data") or {}).get("approver") or e.get("actor")
            if who:
                already.append(str(who))
    if requested is None:
        return None
    return {"event": requested, "initiator": initiator, "already": already}


def to_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)
