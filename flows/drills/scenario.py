"""Drill scenarios: ``runbooks/drills/*.yaml`` -> a validated ``Scenario``, or every problem at once.

Owns: the scenario models (pydantic, ``extra="forbid"``), ``load_scenario`` / ``validate_scenario_file``,
``is_scenario_file`` (scenario or runbook, by content)
(located ``file:line:col: error[DRxxx]`` diagnostics, the runbook YAML dialect and source marks of
``flows.engine.spec.loader``), ``resolve_scenario`` (name -> file), ``seconds`` (duration text ->
seconds), ``DRILL_CODES`` and ``ScenarioDiagnostic`` (a ``Diagnostic`` with DR codes).
Checks beyond the shape: the runbook exists and is valid, inputs are declared by it, steps named in
triggers exist in it, probes exist in ``integrations.probes`` and accept their ``with:``, the fleet
variant/services/accounts are ones the sandbox seeds, durations parse.
Must not touch: Prefect, boto3, Slack, the sandbox processes; it never runs anything.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flows.engine.runbooks import REPO_RUNBOOKS, resolve_runbook
from flows.engine.spec import load_runbook
from flows.engine.spec.diagnostics import Diagnostic, cap_diagnostics, format_all, lookalike_note, sort_diagnostics
from flows.engine.spec.loader import JsonPath, SourceMap, load_yaml, read_runbook
from flows.engine.spec.shape import _dotted, _resolve
from integrations.errors import ConfigurationError, InputError, RunbookError
from integrations.probes import default_probes
from integrations.sandbox.fleet import ACCOUNTS
from integrations.sandbox.fleet_grid import grid_accounts, grid_services, grid_variant, parse_grid

__all__ = [
    "DRILL_CODES",
    "REPO_DRILLS",
    "ApproverBehaviour",
    "AwsFault",
    "FleetSpec",
    "Inject",
    "KillAndResume",
    "LateDiscovery",
    "ProbeSets",
    "ProbeUse",
    "Scenario",
    "ScenarioDiagnostic",
    "SlackOutage",
    "Targets",
    "Trigger",
    "is_scenario_file",
    "load_scenario",
    "resolve_scenario",
    "scenario_schema",
    "seconds",
    "validate_scenario_file",
]

REPO_DRILLS = REPO_RUNBOOKS / "drills"

#: code -> title. DR0xx: the file and its shape (same meaning as RB0xx); DR1xx: meaning.
DRILL_CODES: dict[str, str] = {
    "DR001": "YAML syntax error",
    "DR002": "duplicate YAML key",
    "DR003": "schema error (missing, unknown or mistyped field)",
    "DR004": "scenario exceeds a limit (size, nesting, aliases)",
    "DR005": "too many diagnostics (the rest are not shown)",
    "DR101": "unknown or invalid runbook",
    "DR102": "unknown runbook input",
    "DR103": "unknown step",
    "DR104": "unknown probe",
    "DR105": "invalid duration",
    "DR106": "fleet, service or account the sandbox does not have",
    "DR107": "invalid probe parameters",
    "DR108": "probe compares with a before-observation the scenario does not take",
    "DR109": "the runbook waits for approvals nobody in the scenario answers",
}


@dataclass(frozen=True)
class ScenarioDiagnostic(Diagnostic):
    """A ``Diagnostic`` whose code is a DRxxx code (formats exactly like runbook diagnostics)."""

    def __post_init__(self) -> None:
        if self.code not in DRILL_CODES:
            raise ValueError(f"unknown drill diagnostic code {self.code!r}")

    @property
    def title(self) -> str:
        return DRILL_CODES[self.code]


#: the loader's generic wording about "the runbook" file (``flows.engine.spec.loader``), as said of
#: a scenario; only these phrases change, never a key name or value quoted in a message
_GENERIC = (("runbook is ", "scenario is "), ("cannot read runbook", "cannot read scenario"),
            ("save the runbook as", "save the scenario as"))


def _about_scenario(text: str | None) -> str | None:
    if text is None:
        return None
    for old, new in _GENERIC:  # each is how the loader's message or hint starts
        if text.startswith(old):
            return new + text[len(old):]
    return text


def _dr(d: Diagnostic) -> ScenarioDiagnostic:
    """A loader diagnostic (RB0xx) as the scenario's DR0xx; only the loader's generic wording
    about the file ("runbook is … bytes", "cannot read runbook", "save the runbook as UTF-8") is
    said of a scenario — a user's key (``duplicate key 'runbook'``) or field path stays as written."""
    code = d.code if d.code.startswith("DR") else "DR" + d.code[2:]
    return ScenarioDiagnostic(d.file, d.line, d.col, code, _about_scenario(d.message) or "", d.severity,
                              _about_scenario(d.hint))


# ------------------------------------------------------------------ durations

_DURATION_RX = r"^\s*\d+(?:\.\d+)?\s*(?:ms|s|m|h)\s*$"
_DURATION_OR_RUN = r"^(?:\s*\d+(?:\.\d+)?\s*(?:ms|s|m|h)\s*|run)$"
_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

Duration = Annotated[str, Field(pattern=_DURATION_RX, description='A duration: "500ms", "30s", "5m", "1h"')]


def seconds(value: str | float | None) -> float | None:
    """``"30s"`` / ``"2m"`` / ``"500ms"`` / ``"1h"`` / a number (seconds) -> seconds; None stays None."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    m = _DUR.match(value)
    if not m:
        raise ValueError(f"not a duration: {value!r} (use e.g. 500ms, 30s, 5m, 1h)")
    return float(m.group(1)) * _UNIT[m.group(2)]


# ------------------------------------------------------------------ models


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FleetSpec(_M):
    """The sandbox fleet to seed. ``default``: 3 accounts with one service each, plus
    ``legacy-desktop`` in ``two-lines``; ``affected`` names the services the scenario expects the
    runbook to find affected. ``leaked-key``, ``tenants``, ``ci-action``, ``signing``: the default
    fleet plus what the runbook library acts on (``integrations.sandbox.fleet_library``).
    ``grid``: a generated fleet of ``accounts`` x ``services_per_account`` services
    (``svc-<account#>-<service#>`` in accounts ``4000000000NN``) of which ``affected`` (a count,
    spread round-robin over the accounts, or names) carry the malicious lockfile, a signing
    certificate, a release and an audience (``integrations.sandbox.fleet_grid``)."""

    variant: Literal["default", "two-lines", "grid", "leaked-key", "tenants", "ci-action", "signing"] = "default"
    accounts: int = Field(default=3, ge=1, description="accounts in the fleet (fixed variants: 3; grid: 1-20)")
    services_per_account: int = Field(default=1, ge=1, description="services per account (fixed variants: 1; "
                                      "grid: 1-10)")
    affected: list[str] | int = Field(default_factory=lambda: ["desktop-app"])

    def sandbox_variant(self) -> str:
        """What the drill's sandbox seeds (``--fleet-variant``)."""
        if self.variant == "grid":
            return grid_variant(self.accounts, self.services_per_account, self.affected)
        return self.variant


class ApproverBehaviour(_M):
    """Who answers approval requests in the drill, and how."""

    user: str = Field(pattern=r"^[UW][A-Z0-9]{2,}$", description="Slack user id, e.g. U0LEAD1")
    decision: Literal["approve", "deny", "silent"] = "approve"
    after: Duration = "0s"


class Trigger(_M):
    """``{step_started: X}`` or ``{calls: N, operation: Op}`` (after N calls of an AWS operation)."""

    step_started: str | None = None
    calls: int | None = Field(default=None, ge=1)
    operation: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Trigger:
        if (self.step_started is None) == (self.calls is None):
            raise ValueError("a trigger is either {step_started: X} or {calls: N, operation: Op}")
        if self.calls is not None and not self.operation:
            raise ValueError("calls: N needs operation: Op")
        return self


class _Inject(_M):
    at: Duration | None = Field(default=None, description="offset from the start of the run")
    on: Trigger | None = None

    @model_validator(mode="after")
    def _at_or_on(self) -> _Inject:
        if self.at is not None and self.on is not None:
            raise ValueError("give either at: (an offset) or on: (a trigger), not both")
        return self


class AwsFault(_Inject):
    """An AWS API fault in the sandbox (``integrations.sandbox.faults.FaultRule``): an error
    (Throttling 400, AccessDenied 403, 5xx 503), optionally slowed by ``latency_ms``, or with
    ``error: null`` a latency-only fault (the call is delayed, then answered normally)."""

    kind: Literal["aws_fault"]
    service: str = Field(description="SigV4 service name: iam, acm, s3, ses, secretsmanager, sts…")
    operation: str = Field(description="API operation, e.g. ImportCertificate; '*' for any")
    account: str | None = Field(default=None, pattern=r"^\d{12}$")
    error: Literal["Throttling", "AccessDenied", "5xx"] | None = "Throttling"
    rate: float | None = Field(default=None, ge=0.0, le=1.0)
    count: int | None = Field(default=None, ge=1)
    latency_ms: float | None = Field(default=None, ge=0, le=600_000)

    @model_validator(mode="after")
    def _shape(self) -> AwsFault:
        if self.rate is not None and self.count is not None:
            raise ValueError("give rate or count, not both")
        if self.error is None and self.latency_ms is None:
            raise ValueError("error: null needs latency_ms (a latency-only fault)")
        return self


class SlackOutage(_Inject):
    """The Slack stand-in answers 503 in a window: it opens ``from`` after the run starts (or
    after the ``on:`` trigger fires) and lasts ``for`` (a duration, or ``run``: until the end)."""

    kind: Literal["slack_outage"]
    from_: Duration | None = Field(default=None, alias="from", description="when the window opens: an offset from "
                                   "the start of the run, or from the on: trigger")
    for_: Annotated[str, Field(pattern=_DURATION_OR_RUN)] = Field(default="run", alias="for")

    @model_validator(mode="after")
    def _one_start(self) -> SlackOutage:
        if self.at is not None and self.from_ is not None:
            raise ValueError("give the window's start once: at: or from:, not both")
        return self


def _one_trigger(inj: _Inject, at_step: str | None) -> None:
    if at_step is not None and (inj.at is not None or inj.on is not None):
        raise ValueError("at_step is a trigger (the same as on: {step_started: X}): give at_step, at: or on:, "
                         "not several")


class KillAndResume(_Inject):
    """The run process is SIGKILLed and then resumed with ``stanch resume``: without
    ``operation``, when the trigger fires (``at_step``: as that step starts); with ``operation``,
    inside that AWS call's side-effect window (a kill point, ``integrations.sandbox.killpoints``,
    set when the trigger fires; ``skip`` lets that many matching calls through first)."""

    kind: Literal["kill_and_resume"]
    at_step: str | None = Field(default=None, description="trigger: when this step starts")
    operation: str | None = Field(default=None, description="kill point: the AWS operation, e.g. SendEmail")
    when: Literal["before", "after", "answered"] = "after"
    skip: int = Field(default=0, ge=0, description="kill point: matching calls let through first")

    @model_validator(mode="after")
    def _where(self) -> KillAndResume:
        if self.at_step is None and self.operation is None and self.on is None and self.at is None:
            raise ValueError("kill_and_resume needs at_step, operation, on or at")
        _one_trigger(self, self.at_step)
        return self


class LateDiscovery(_Inject):
    """A second affected service appears in the inventory mid-run (``at_step``: as that step starts)."""

    kind: Literal["late_discovery"]
    at_step: str | None = Field(default=None, description="trigger: when this step starts")
    service: str

    @model_validator(mode="after")
    def _trigger(self) -> LateDiscovery:
        _one_trigger(self, self.at_step)
        return self


Inject = Annotated[AwsFault | SlackOutage | KillAndResume | LateDiscovery, Field(discriminator="kind")]


class ProbeUse(_M):
    probe: str = Field(description="a name in the probe registry (docs/drills.md)")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    name: str | None = Field(default=None, description="shown in the scorecard (default: the probe name)")


class ProbeSets(_M):
    before: list[ProbeUse] = Field(default_factory=list, description="steady state, before the run")
    after: list[ProbeUse] = Field(default_factory=list)
    continuous: list[ProbeUse] = Field(default_factory=list)
    interval: Duration = Field(default="2s", description="how often continuous probes run")


class Targets(_M):
    time_to_contain: Duration | None = None
    time_to_first_decision: Duration | None = None


class Scenario(_M):
    """One drill: ``runbooks/drills/<name>.yaml``."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")
    title: str
    description: str = ""
    runbook: str = Field(description="runbook name, or a path relative to the scenario file")
    inputs: dict[str, Any] = Field(default_factory=dict)
    fleet: FleetSpec = Field(default_factory=FleetSpec)
    approvers: list[ApproverBehaviour] = Field(default_factory=list)
    injects: list[Inject] = Field(default_factory=list)
    probes: ProbeSets = Field(default_factory=ProbeSets)
    targets: Targets = Field(default_factory=Targets)
    approval_expires: Duration | None = Field(
        default=None, description="drill time compression: every approval of the run expires after at most "
        "this long (a runbook's 2h gate would otherwise hold a silent-approver drill for 2h); the runbook's "
        "own expiry is recorded beside it in the timeline")


def scenario_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a scenario file; ``runbooks/drills/schema.json``."""
    body = Scenario.model_json_schema(by_alias=True, mode="validation")
    body.pop("title", None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://stanch.dev/schemas/drill-scenario.schema.json",
        "title": "stanch drill scenario",
        "description": "A tabletop drill of a runbook (see docs/drills.md).",
        **body,
    }


# ------------------------------------------------------------------ shape -> diagnostics

_DURATION_FIELDS = {"at", "after", "from", "for", "interval", "time_to_contain", "time_to_first_decision",
                    "approval_expires"}
_OWNERS: dict[tuple[str, ...], type[BaseModel]] = {
    (): Scenario, ("fleet",): FleetSpec, ("targets",): Targets, ("probes",): ProbeSets,
    ("approvers", "#"): ApproverBehaviour, ("probes", "*", "#"): ProbeUse, ("injects", "#", "on"): Trigger,
}
_KINDS: dict[str, type[BaseModel]] = {
    "aws_fault": AwsFault, "slack_outage": SlackOutage, "kill_and_resume": KillAndResume,
    "late_discovery": LateDiscovery,
}


def _owner(path: JsonPath, data: Any) -> type[BaseModel] | None:
    shape = tuple("#" if isinstance(p, int) else str(p) for p in path)
    if len(shape) == 2 and shape[0] == "injects":
        raw = data["injects"][path[1]] if isinstance(data.get("injects"), list) else None
        return _KINDS.get(str(raw.get("kind"))) if isinstance(raw, dict) else None
    if len(shape) == 3 and shape[0] == "probes":
        return ProbeUse
    return _OWNERS.get(shape)


def _shape_diagnostics(exc: ValidationError, data: dict[str, Any], smap: SourceMap,
                       file: str) -> list[ScenarioDiagnostic]:
    out: list[ScenarioDiagnostic] = []
    for err in exc.errors():
        loc = tuple("from" if p == "from_" else "for" if p == "for_" else "with" if p == "with_" else p
                    for p in err["loc"])
        path, rest = _resolve(loc, data)
        where = _dotted(path) if path else "scenario"  # the top level; a field path stays as written
        kind = err["type"]
        code = "DR003"
        at_value = True
        if kind == "missing":
            name = str(rest[-1] if rest else path[-1] if path else "?")
            message = f"{where}: missing required field {name!r}" if path else f"missing required field {name!r}"
            at_value = False
        elif kind == "extra_forbidden":
            key = str(path[-1])
            owner = _owner(path[:-1], data)
            hint = ""
            if owner is not None:
                names = [f.alias or n for n, f in owner.model_fields.items()]
                close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
                hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            message = f"unknown field {key!r}{lookalike_note(key)}{hint}"
            at_value = False
        elif kind == "string_pattern_mismatch" and path and path[-1] in _DURATION_FIELDS:
            code = "DR105"
            message = f"{where}: {err.get('input')!r} is not a duration (use e.g. 500ms, 30s, 5m, 1h)"
        elif kind == "union_tag_invalid":
            message = f"{where}: unknown inject kind {err.get('input', {}).get('kind')!r}" \
                      f" (known: {', '.join(_KINDS)})" if isinstance(err.get("input"), dict) else str(err["msg"])
        else:
            message = f"{where}: {str(err['msg']).removeprefix('Value error, ')}"
        line, col = smap.position(path, value=at_value and not rest)
        out.append(ScenarioDiagnostic(file, line, col, code, message))
    return out


# ------------------------------------------------------------------ meaning


def _runbook_path(ref: str, base_dir: Path | None) -> Path:
    if base_dir is not None and (base_dir / ref).is_file():
        return base_dir / ref
    return resolve_runbook(ref)


def _services(variant: str) -> set[str]:
    """Services ``integrations.sandbox.fleet.seed_fleet`` creates for ``variant``."""
    names = {"desktop-app", "web-dashboard", "billing-api"}
    return names | ({"legacy-desktop"} if variant == "two-lines" else set())


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _steps_named(data: dict[str, Any]) -> Iterator[tuple[JsonPath, str]]:
    for i, inj in enumerate(_l(data.get("injects"))):
        step = _d(_d(inj).get("on")).get("step_started")
        if isinstance(step, str):
            yield ("injects", i, "on", "step_started"), step
        if isinstance(_d(inj).get("at_step"), str):
            yield ("injects", i, "at_step"), _d(inj)["at_step"]


def _check(data: dict[str, Any], smap: SourceMap, file: str, base_dir: Path | None) -> list[ScenarioDiagnostic]:
    """Meaning checks on the raw data, so they run even when the shape has errors (all at once)."""
    out: list[ScenarioDiagnostic] = []

    def err(path: JsonPath, code: str, message: str, *, value: bool = True) -> None:
        line, col = smap.position(path, value=value)
        out.append(ScenarioDiagnostic(file, line, col, code, message))

    def close(word: str, names: list[str]) -> str:
        found = difflib.get_close_matches(word, names, n=1)
        return f" (did you mean {found[0]!r}?)" if found else ""

    # runbook, its inputs and steps
    ref = data.get("runbook")
    if isinstance(ref, str):
        try:
            loaded = load_runbook(_runbook_path(ref, base_dir))
        except (InputError, ConfigurationError) as exc:
            err(("runbook",), "DR101", f"runbook: {exc}")
        except RunbookError as exc:
            n = sum(1 for d in exc.diagnostics if d.is_error)
            err(("runbook",), "DR101", f"runbook {ref!r} does not validate ({n} errors): run `stanch validate {ref}`")
        else:
            steps = sorted(s.id for s in loaded.runbook.steps)
            gates = [s.id for s in loaded.runbook.steps if getattr(s, "approval", None) is not None]
            if gates and not data.get("approvers") and not data.get("approval_expires"):
                err(("runbook",), "DR109", f"runbook {ref!r} waits for approval at {', '.join(gates)} and the "
                    "scenario has no approvers: add approvers (approve, deny or silent) or approval_expires, "
                    "or the drill waits out the runbook's own expiry")
            declared = sorted(loaded.runbook.inputs)
            for key in _d(data.get("inputs")):
                if key not in declared:
                    err(("inputs", key), "DR102", f"runbook {loaded.runbook.name!r} has no input {key!r}"
                        f"{lookalike_note(str(key))}{close(str(key), declared)}", value=False)
            for path, step in _steps_named(data):
                if step not in steps:
                    err(path, "DR103",
                        f"runbook {ref!r} has no step {step!r}{lookalike_note(step)}{close(step, steps)}")
    # probes
    registry = default_probes()
    known = registry.names()
    probes = _d(data.get("probes"))
    for phase in ("before", "after", "continuous"):
        for i, use in enumerate(_l(probes.get(phase))):
            name, params = _d(use).get("probe"), _d(use).get("with", {})
            if not isinstance(name, str):
                continue
            if name not in known:
                err(("probes", phase, i, "probe"), "DR104", f"unknown probe {name!r}{close(name, known)}")
                continue
            before = {_d(u).get("probe") for u in _l(probes.get("before"))}
            if phase != "before" and registry.get(name).needs_before and name not in before:
                err(("probes", phase, i, "probe"), "DR108", f"probe {name!r} compares with its before-observation: "
                    f"add {{probe: {name}}} under probes.before, or it can only record a baseline")
            try:
                registry.check_params(name, _d(params))
            except ConfigurationError as exc:
                err(("probes", phase, i, "with") if "with" in _d(use) else ("probes", phase, i), "DR107", str(exc))
    # fleet, accounts, services
    fleet = _d(data.get("fleet"))
    variant = fleet.get("variant", "default")
    accounts = fleet.get("accounts", len(ACCOUNTS))
    per = fleet.get("services_per_account", 1)
    known_accounts = sorted(ACCOUNTS.values())
    if variant == "grid":
        n = accounts if isinstance(accounts, int) else 1
        m = per if isinstance(per, int) else 1
        services, known_accounts = grid_services(n, m), grid_accounts(n)
        affected = fleet.get("affected", 1)
        if isinstance(affected, int) or (isinstance(affected, list) and all(isinstance(a, str) for a in affected)):
            try:
                parse_grid(grid_variant(n, m, affected))
            except ValueError as exc:
                err(("fleet",), "DR106", str(exc))
    else:
        services = sorted(_services(variant if isinstance(variant, str) else "default"))
        if isinstance(accounts, int) and accounts != len(ACCOUNTS):
            err(("fleet", "accounts"), "DR106", f"the sandbox fleet has {len(ACCOUNTS)} accounts, not {accounts} "
                "(variant: grid generates N accounts x M services)")
        if isinstance(per, int) and per != 1:
            err(("fleet", "services_per_account"), "DR106", "the sandbox fleet has 1 service per account "
                "(variant: grid generates N accounts x M services)")
        for i, name in enumerate(_l(fleet.get("affected"))):
            if isinstance(name, str) and name not in services:
                err(("fleet", "affected", i), "DR106",
                    f"no service {name!r} in fleet {variant!r} (known: {', '.join(services)})")
    for i, inj in enumerate(_l(data.get("injects"))):
        account, service = _d(inj).get("account"), _d(inj).get("service")
        if _d(inj).get("kind") == "aws_fault" and isinstance(account, str) and account not in known_accounts:
            shown = ", ".join(known_accounts[:5]) + (" …" if len(known_accounts) > 5 else "")
            err(("injects", i, "account"), "DR106", f"no account {account} in the sandbox (known: {shown})")
        if _d(inj).get("kind") == "late_discovery" and isinstance(service, str) and service not in services:
            err(("injects", i, "service"), "DR106", f"no service {service!r} in fleet {variant!r}")
    return out


def _analyse(text: str, filename: str, base_dir: Path | None) -> tuple[Scenario | None, list[ScenarioDiagnostic]]:
    doc = load_yaml(text, filename)
    diagnostics = [_dr(d) for d in doc.diagnostics]
    if doc.data is None and diagnostics:
        return None, diagnostics
    if not isinstance(doc.data, dict):
        kind = "empty" if doc.data is None else f"a {type(doc.data).__name__}"
        line, col = doc.source_map.position(())
        return None, [ScenarioDiagnostic(filename, line, col, "DR003",
                                         f"a scenario is a mapping (name, title, runbook, ...), not {kind}")]
    scenario: Scenario | None = None
    try:
        scenario = Scenario.model_validate(doc.data)
    except ValidationError as exc:
        diagnostics += _shape_diagnostics(exc, doc.data, doc.source_map, filename)
    diagnostics += _check(doc.data, doc.source_map, filename, base_dir)
    return (scenario if not diagnostics else None), diagnostics


def _finish(diagnostics: list[ScenarioDiagnostic]) -> list[ScenarioDiagnostic]:
    capped = cap_diagnostics(sort_diagnostics(diagnostics))
    return [d if isinstance(d, ScenarioDiagnostic) else _dr(d) for d in capped]


def validate_scenario_text(text: str, filename: str, *, base_dir: Path | None = None) -> list[ScenarioDiagnostic]:
    """Every diagnostic for scenario ``text`` (a relative ``runbook:`` is looked up in ``base_dir``)."""
    return _finish(_analyse(text, filename, base_dir)[1])


def validate_scenario_file(path: str | Path) -> list[ScenarioDiagnostic]:
    """Every diagnostic for the scenario file at ``path`` (unreadable file: one DR001)."""
    path = Path(path)
    text, problem = read_runbook(path)
    if text is None:
        return [_dr(problem)] if problem is not None else []
    return _finish(_analyse(text, str(path), path.parent)[1])


def load_scenario(path: str | Path) -> Scenario:
    """Load and check a scenario; raise ``RunbookError`` (``.diagnostics``: every problem) on any error."""
    path = Path(path)
    text, problem = read_runbook(path)
    if text is None:
        diags = [_dr(problem)] if problem is not None else []
        raise RunbookError(format_all(diags).rstrip("\n") or f"{path}: cannot read scenario", diags)
    scenario, diagnostics = _analyse(text, str(path), path.parent)
    diagnostics = _finish(diagnostics)
    errors = [d for d in diagnostics if d.is_error]
    if scenario is None or errors:
        n = len(errors)
        raise RunbookError(f"{path}: {n} error{'s' if n != 1 else ''}\n{format_all(errors)}".rstrip("\n"), diagnostics)
    return scenario


#: top-level keys only a scenario has (a runbook has ``steps``, which a scenario never has)
SCENARIO_KEYS = frozenset({"runbook", "probes", "injects", "fleet", "approvers", "targets", "approval_expires"})


_TOP_KEY = re.compile(r"^(['\"]?)([A-Za-z_][\w-]*)\1[ \t]*:", re.MULTILINE)


def is_scenario_file(path: str | Path) -> bool:
    """Whether ``stanch validate`` should read ``path`` as a drill scenario rather than a runbook
    (and so report the DR codes ``stanch drill run`` reports for it): it lives in a folder named
    ``drills``, or its top level is a mapping with a scenario key (``runbook:``, ``probes:``,
    ``injects:`` …) and no ``steps:``. When the YAML does not parse, the same rule is applied to
    the keys written at the start of a line (column 1), so a scenario with a syntax error still
    gets DR001 in both commands. A file that is neither (e.g. a top-level list outside a
    ``drills`` folder) is read as a runbook. Parsed with the runbook loader's limits, so a hostile
    file costs no more here than when it is validated."""
    path = Path(path)
    if path.resolve().parent.name == "drills":
        return True
    text, _ = read_runbook(path)
    if text is None:
        return False
    doc = load_yaml(text, str(path))
    if doc.data is None and doc.diagnostics:  # does not parse: the keys as written at the top level
        keys = {m.group(2) for m in _TOP_KEY.finditer(text)}
    elif isinstance(doc.data, dict):
        keys = set(map(str, doc.data))
    else:
        return False
    return "steps" not in keys and bool(SCENARIO_KEYS & keys)


def resolve_scenario(ref: str) -> Path:
    """A scenario path, or a name looked up in ./runbooks/drills and the bundled runbooks/drills."""
    p = Path(ref)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise InputError(f"drill scenario file not found: {p}")
        return p
    bases = (Path.cwd() / "runbooks" / "drills", REPO_DRILLS)
    for base in bases:
        for ext in (".yaml", ".yml"):
            if (base / f"{ref}{ext}").is_file():
                return base / f"{ref}{ext}"
    known = sorted({c.stem for b in bases if b.is_dir() for c in b.glob("*.y*ml")})
    raise InputError(f"no drill scenario named {ref!r} (known: {', '.join(known) or 'none'})")
