"""The probe registry's core: ``ProbeContext``, ``ProbeResult``, ``Probe`` and ``ProbeRegistry``.

Owns: how a probe is declared (name, family, parameter model, a read-only check function, the
sandbox call counters it reads, whether its before-run observation is only a baseline), how
parameters are validated (``ConfigurationError`` for an unknown probe or bad ``with:``), and the
rule that a failing check is a result, never an exception (AWS/Slack errors while observing
become a failed result that says what went wrong), plus the fleet/clients helpers probes share.
Must not touch: ``flows``, ``prefect``; never calls a mutating API (probes only read).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, ValidationError

from integrations.aws.session import AccountClients, clients_for
from integrations.errors import ConfigurationError, StanchError
from integrations.settings import StanchSettings

__all__ = ["NoParams", "Probe", "ProbeContext", "ProbeParams", "ProbeRegistry", "ProbeResult", "clients", "services"]


@dataclass(frozen=True)
class ProbeContext:
    """What a probe may look at. ``aws``: the sandbox endpoint URL (str) or ``StanchSettings`` —
    clients come from ``integrations.aws.session.clients_for``, the factory the actions use.
    ``incident``: incident.json meta plus ``fleet`` (the sandbox fleet JSON) and ``slack``
    (``{channel, ts}`` of the incident thread) when known. ``before``: observations of the
    before-probes by result name, so an after-probe can compare."""

    aws: Any
    slack_base_url: str | None = None
    slack_token: str | None = None
    inventory_path: Path | None = None
    incident: dict[str, Any] = field(default_factory=dict)
    before: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProbeResult:
    name: str
    passed: bool
    observed: Any
    expected: str
    detail: str


class ProbeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoParams(ProbeParams):
    pass


class ServicesParams(ProbeParams):
    services: list[str] | None = None  # default: from the fleet (affected / unaffected)


Check = Callable[[Any, ProbeContext, str], ProbeResult]
Counters = Callable[[Any], list[dict[str, Any]]]


@dataclass(frozen=True)
class Probe:
    name: str
    description: str
    params: type[ProbeParams]
    check: Check
    needs_before: bool = False  # compares with its own before-observation: meaningless without one
    #: sandbox call counters (``/_fault`` rule bodies) it reads; installed before the run by the drill
    counters: Counters | None = None


class ProbeRegistry:
    """A closed set of probes (``default_probes()``); ``run`` never raises for a failing check."""

    def __init__(self, probes: list[Probe]) -> None:
        self._probes: dict[str, Probe] = {}
        for p in probes:
            if p.name in self._probes:
                raise ValueError(f"probe {p.name!r} registered twice")
            self._probes[p.name] = p

    def names(self) -> list[str]:
        return sorted(self._probes)

    def get(self, name: str) -> Probe:
        try:
            return self._probes[name]
        except KeyError:
            raise ConfigurationError(f"unknown probe {name!r} (known: {', '.join(self.names())})") from None

    def __iter__(self) -> Any:
        return iter(self._probes[n] for n in self.names())

    def check_params(self, name: str, params: dict[str, Any]) -> ProbeParams:
        probe = self.get(name)
        try:
            return probe.params.model_validate(params or {})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'with'}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigurationError(f"probe {name!r}: invalid parameters: {problems}") from None

    def counters(self, uses: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """The sandbox call counters the probes ``uses`` (name, ``with:``) read, each once: a drill
        installs them before the run starts (a counter added later misses the calls before it)."""
        out: list[dict[str, Any]] = []
        for name, params in uses:
            probe = self.get(name)
            if probe.counters is not None:
                out += [c for c in probe.counters(self.check_params(name, params)) if c not in out]
        return out

    def run(self, name: str, params: dict[str, Any], ctx: ProbeContext) -> ProbeResult:
        probe = self.get(name)
        parsed = self.check_params(name, params)
        try:
            return probe.check(parsed, ctx, name)
        except (ClientError, BotoCoreError, StanchError, OSError, KeyError, ValueError) as exc:
            return ProbeResult(name, False, None, probe.description, f"could not observe: {type(exc).__name__}: {exc}")


def settings_of(ctx: ProbeContext) -> StanchSettings:
    if isinstance(ctx.aws, StanchSettings):
        return ctx.aws
    return StanchSettings(aws_endpoint_url=str(ctx.aws), aws_region="us-east-1")


def clients(ctx: ProbeContext, account: str, region: str | None = None) -> AccountClients:
    """Read clients in ``account`` through the actions' session factory."""
    return clients_for(settings_of(ctx), account, region)


def services(ctx: ProbeContext, *, affected: bool | None, names: list[str] | None = None) -> list[dict[str, Any]]:
    """Services of the drill's fleet (``ctx.incident["fleet"]``): the named ones, else by ``affected``."""
    fleet = ctx.incident.get("fleet") or {}
    table: dict[str, dict[str, Any]] = dict(fleet.get("services") or {})
    if names is not None:
        missing = [n for n in names if n not in table]
        if missing:
            raise ConfigurationError(f"no service {', '.join(missing)} in the drill fleet")
        return [table[n] for n in names]
    return [s for s in table.values() if affected is None or bool(s.get("affected")) == affected]


def audiences(ctx: ProbeContext) -> dict[str, dict[str, Any]]:
    return dict((ctx.incident.get("fleet") or {}).get("audiences") or {})
