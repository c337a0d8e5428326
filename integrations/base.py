"""The action contract: what every integration provides and what the engine may rely on.

Owns: ``ActionParams``/``ActionResult`` base models, ``ActionSpec`` (one registered action),
``ActionContext`` (what an action receives at run time), ``ActionRegistry`` (the closed set of
action names a runbook may use, filled from the ``stanch.integrations`` entry points), and the
re-exported error hierarchy.

Must not touch: ``flows`` and ``prefect``. The engine imports this module, never the reverse.
"""

from __future__ import annotations

import difflib
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from integrations.errors import (
    ActionError,
    ConfigurationError,
    DrillSafetyError,
    InputError,
    PermanentActionError,
    RunbookError,
    StanchError,
    TransientActionError,
)
from integrations.settings import StanchSettings

__all__ = [
    "OBSERVED",
    "ActionContext",
    "ActionError",
    "ActionParams",
    "ActionRegistry",
    "ActionResult",
    "ActionSpec",
    "ConfigurationError",
    "DrillSafetyError",
    "InputError",
    "IntentLedger",
    "PermanentActionError",
    "PlannedOperation",
    "RunbookError",
    "StanchError",
    "TransientActionError",
    "default_registry",
]

log = logging.getLogger("stanch.actions")

OBSERVED = "action.observed"
"""Timeline kind of a before-image (``ActionContext.observe``): ``{"subject", "state"}``."""


class ActionParams(BaseModel):
    """Typed ``with:`` block of an action. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class ActionResult(BaseModel):
    """Typed output of an action; becomes ``steps.<id>.output`` in expressions.

    Never put secret material in a result: results go to the timeline, reports and Slack.
    """

    model_config = ConfigDict(extra="forbid")


class PlannedOperation(BaseModel):
    """One outside-world call an action would make (for ``stanch plan`` and dry runs)."""

    model_config = ConfigDict(extra="forbid")

    service: str
    operation: str
    account: str | None = None
    region: str | None = None
    resources: list[str] = []
    note: str | None = None


P = TypeVar("P", bound=ActionParams)
R = TypeVar("R", bound=ActionResult)


class IntentLedger:
    """The intents of one incident's non-idempotent sends: ``key -> latest state``.

    An action about to make a call it cannot repeat safely (an e-mail, a Slack post) records an
    *intent* first (``ActionContext.intent``) and *settles* it when it knows the outcome
    (``ActionContext.settle``). Both go to the incident timeline; the engine seeds this ledger
    from the timeline of earlier attempts, so after a crash an action sees which sends were
    started and never confirmed (state ``open``) and settles them against the sink, or by its
    documented policy where the sink cannot be asked. States: ``open``, then one outcome —
    ``sent`` (the call returned), ``found`` (found at the sink after a crash), ``not_sent`` (the
    sink refused: nothing happened), ``possibly_sent`` (unconfirmed, not repeated by policy).
    Entries are plain dicts: ``state``, ``ts`` (when the intent was recorded) and its data.
    """

    OPEN = "open"

    def __init__(self, seed: dict[str, dict[str, Any]] | None = None) -> None:
        self._data: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (seed or {}).items()}
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._data.get(key)
            return dict(found) if found is not None else None

    def note(self, key: str, state: str, data: dict[str, Any] | None = None) -> None:
        with self._lock:
            entry = self._data.setdefault(key, {})
            entry.update(data or {})
            entry["state"] = state

    def open_keys(self) -> list[str]:
        with self._lock:
            return [k for k, v in self._data.items() if v.get("state") == self.OPEN]


@dataclass
class ActionContext:
    """What an action receives besides its params.

    ``record(kind, data)`` appends an event to the incident timeline (the engine wires it);
    ``redact(value)`` registers a string that must never appear in any output;
    ``mask(text)`` is ``text`` as it may be shown to people (Slack): the run's secret inputs, what
    was ``redact``-ed and secret-looking material masked (the engine wires ``redact_text``).
    Params reach an action raw (a secret input's value included): an action that shows a param
    to people masks it at that edge.
    ``intent``/``settle``/``prior_intent`` keep non-idempotent sends exactly-once across crashes
    (see ``IntentLedger``; keys come from ``intent_key`` and never contain message content).
    ``history(kind)`` is the data of every ``kind`` event this incident recorded for this step
    (and item), earlier attempts and crashed runs included — what ``observe`` and
    ``record_once`` build on.
    """

    incident_id: str
    step_id: str
    settings: StanchSettings
    item_key: str | None = None
    drill: bool = False
    runbook: str = ""
    record: Callable[[str, dict[str, Any]], None] = field(default=lambda kind, data: None)
    history: Callable[[str], list[dict[str, Any]]] = field(default=lambda kind: [])
    logger: logging.Logger = field(default_factory=lambda: log)
    redact_text: Callable[[str], str] = field(default=lambda text: text, repr=False)
    intents: IntentLedger = field(default_factory=IntentLedger)
    _secrets: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def redact(self, value: str) -> None:
        if value:
            with self._lock:
                self._secrets.add(value)

    def mask(self, text: str) -> str:
        with self._lock:
            own = sorted(self._secrets, key=len, reverse=True)
        for secret in own:
            text = text.replace(secret, "[redacted]")
        return self.redact_text(text)

    @property
    def secrets(self) -> frozenset[str]:
        return frozenset(self._secrets)

    def observe(self, subject: str, state: dict[str, Any]) -> dict[str, Any]:
        """The before-image of ``subject``: its state before this incident's step (item) first
        acted on it. The first call records ``state`` (an ``action.observed`` event) *before* the
        action changes anything and returns it; every later call — a retry, or a resumed run
        after a crash — returns the state recorded first, so an action can tell "changed by an
        earlier attempt of this incident" from "was already so". Never put secrets in ``state``."""
        for data in self.history(OBSERVED):
            if data.get("subject") == subject and isinstance(data.get("state"), dict):
                return dict(data["state"])
        self.record(OBSERVED, {"subject": subject, "state": state})
        return state

    def record_once(self, kind: str, data: dict[str, Any], *, match: tuple[str, ...]) -> bool:
        """Record ``kind`` unless this step (item) already recorded one with the same values for
        the ``match`` fields (in this or an earlier attempt). True if it recorded now. Lets an
        action that finds its change applied but unrecorded (a crash in between) record it once."""
        for old in self.history(kind):
            if all(old.get(k) == data.get(k) for k in match):
                return False
        self.record(kind, data)
        return True

    @property
    def idempotency_token(self) -> str:
        """Stable per incident/step/item: pass it where an API accepts a client token."""
        base = f"{self.incident_id}:{self.step_id}"
        return f"{base}:{self.item_key}" if self.item_key else base

    def intent_key(self, *parts: str) -> str:
        """Deterministic key of one send: incident, step, item, then e.g. ``email``, recipient."""
        return ":".join([self.idempotency_token, *parts])

    def prior_intent(self, key: str) -> dict[str, Any] | None:
        """The intent recorded under ``key`` by this or an earlier attempt (None: never started)."""
        return self.intents.get(key)

    def intent(self, key: str, data: dict[str, Any]) -> None:
        """Record, before the send, that it is about to happen (``intent.recorded``)."""
        self.record("intent.recorded", {"key": key, **data})
        self.intents.note(key, IntentLedger.OPEN, {**data, "ts": datetime.now(UTC).isoformat()})

    def settle(self, key: str, outcome: str, data: dict[str, Any] | None = None) -> None:
        """Record the outcome of an intent (``intent.settled``): sent, found, not_sent, possibly_sent."""
        self.record("intent.settled", {"key": key, "outcome": outcome, **(data or {})})
        self.intents.note(key, outcome, data)


@dataclass(frozen=True)
class ActionSpec(Generic[P, R]):
    """One action in the registry.

    ``run(ctx, params) -> result`` performs it; ``describe(ctx, params)`` lists the calls it
    would make without making any mutating call (read-only lookups are allowed); ``compensation``
    names the action that undoes it, fed with ``compensation_params(params, result)``.
    """

    name: str
    summary: str
    params: type[P]
    result: type[R]
    run: Callable[[ActionContext, P], R]
    mutating: bool
    idempotent: bool
    describe: Callable[[ActionContext, P], list[PlannedOperation]] | None = None
    compensation: str | None = None
    compensation_params: Callable[[P, R], dict[str, Any]] | None = None

    def validate_params(self, raw: dict[str, Any]) -> P:
        return self.params.model_validate(raw)

    def execute(self, ctx: ActionContext, raw: dict[str, Any]) -> R:
        return self.run(ctx, self.validate_params(raw))


class ActionRegistry:
    """The closed set of actions a runbook may name. ``action:`` is a key here, never a path."""

    def __init__(self) -> None:
        self._actions: dict[str, ActionSpec[Any, Any]] = {}

    def register(self, spec: ActionSpec[Any, Any]) -> ActionSpec[Any, Any]:
        if spec.name in self._actions and self._actions[spec.name] is not spec:
            raise ConfigurationError(f"action {spec.name!r} registered twice")
        self._actions[spec.name] = spec
        return spec

    def register_all(self, specs: Iterable[ActionSpec[Any, Any]]) -> None:
        for spec in specs:
            self.register(spec)

    def get(self, name: str) -> ActionSpec[Any, Any]:
        try:
            return self._actions[name]
        except KeyError:
            hint = self.suggest(name)
            extra = f" (did you mean {', '.join(repr(h) for h in hint)}?)" if hint else ""
            raise ConfigurationError(f"unknown action {name!r}{extra}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._actions

    def names(self) -> list[str]:
        return sorted(self._actions)

    def specs(self) -> list[ActionSpec[Any, Any]]:
        return [self._actions[n] for n in self.names()]

    def suggest(self, name: str, n: int = 3) -> list[str]:
        return difflib.get_close_matches(name, self.names(), n=n, cutoff=0.6)


_default: ActionRegistry | None = None
_default_lock = threading.Lock()


def load_entry_point_registry(group: str = "stanch.integrations") -> ActionRegistry:
    """Build a registry from every ``stanch.integrations`` entry point (``register(registry)``)."""
    registry = ActionRegistry()
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        register = ep.load()
        register(registry)
    return registry


def default_registry() -> ActionRegistry:
    """The process-wide registry of built-in (and installed third-party) actions."""
    global _default
    with _default_lock:
        if _default is None:
            _default = load_entry_point_registry()
        return _default
