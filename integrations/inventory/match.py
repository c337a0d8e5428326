"""Who is affected: an OSV advisory matched against every service of an inventory.

Owns: the result model of ``inventory.match_advisory`` (:class:`MatchResult` and its parts),
``scope`` / ``scope_many`` (the plain functions the CLI and the bench call), the exposure window
logic (install history against ``live_from`` / ``live_until``), the safe-version derivation, and
``render_scope_table``.

Decisions (documented in docs/dependencies.md):
- A package whose resolved version the advisory covers is ``affected``. An open-ended range
  (``introduced: "0"``, no bound) or a version the libraries cannot decide is never a plain
  match: it goes to ``needs_confirmation``.
- A floating spec (``^1.6.0``) that admits a bad release makes a service affected only if it
  installed while the bad release was live; with no install history it needs confirmation.
- Exposure: ``exposed`` = an install inside the window and a bad release reachable;
  ``pinned-clean`` = an exact/locked/commit pin on a clean version; ``not-exposed`` = floating,
  but every recorded install is outside the window; otherwise ``unknown``.

Must not touch: ``flows``, ``prefect``, AWS or Slack clients, the network.
"""

from __future__ import annotations

import csv
import gc
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from rich import box
from rich.table import Table

from integrations.base import ActionResult
from integrations.errors import ConfigurationError, InputError, StanchError
from integrations.inventory.model import Inventory, Service, load_inventory
from integrations.inventory.osv import (
    Advisory,
    AffectedPackage,
    Verdict,
    check_advisory_dirs,
    known_bad_release,
    resolve_advisory,
)
from integrations.inventory.readers import Found, PathStep, Source, read_manifest_specs, read_source, read_text_file
from integrations.inventory.versions import VersionScheme, base_ecosystem, normalize_name, scheme_for

__all__ = [
    "AdvisoryInfo",
    "AffectedService",
    "Confirmation",
    "ExposureWindow",
    "MatchResult",
    "MatchedPackage",
    "SafeVersion",
    "ServiceError",
    "ServiceVerdict",
    "render_scope_table",
    "scope",
    "scope_many",
    "scope_notes",
    "summarize_safe_versions",
]

Exposure = Literal["exposed", "pinned-clean", "not-exposed", "unknown"]
SafeAction = Literal["pin", "remove", "none"]
Pin = Literal["exact", "floating", "locked", "tag", "sha", "branch", "unknown"]
_EXPOSURE_RANK = {"exposed": 3, "unknown": 2, "not-exposed": 1, "pinned-clean": 0}
_LOCKFILE_KINDS = ("npm-lock", "pnpm-lock", "yarn-berry-lock", "poetry-lock", "uv-lock")
_IMMUTABLE_PINS = ("exact", "locked", "sha")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AdvisoryInfo(_Model):
    id: str
    summary: str
    aliases: list[str] = []
    published: datetime | None = None
    modified: datetime | None = None
    withdrawn: datetime | None = None
    source: str | None = None
    packages: list[str] = []
    open_ended: list[str] = []
    """``ecosystem/name`` of packages whose range covers all versions (``introduced: "0"``)."""


class ExposureWindow(_Model):
    """When a bad release could have been installed. ``from_source``: ``input`` (given),
    ``advisory.introduced`` (a release time the record carries in ``database_specific``),
    ``advisory.lookback`` (the record's earliest timestamp minus :data:`DEFAULT_LOOKBACK`: the
    bad release's own publication time is not in OSV), ``unbounded`` (the record has no time)."""

    live_from: datetime | None = None
    live_until: datetime | None = None
    from_source: Literal["input", "advisory.introduced", "advisory.lookback", "unbounded"] = "unbounded"
    until_source: Literal["input", "advisory.published", "unbounded"] = "unbounded"
    note: str | None = None


class ServiceError(_Model):
    """A file of one service that could not be read; the other services are still scoped."""

    service: str
    file: str | None = None
    error: str


class MatchedPackage(_Model):
    name: str
    version: str | None
    ecosystem: str
    source: str
    path: list[str]
    pin: Pin
    manifest_spec: str | None = None
    declared_spec: str | None = None
    commit: str | None = None
    verdict: Literal["affected", "floating-exposed"]
    reason: str
    bad_version: str | None = None
    line: str | None = None
    """Major release line of the bad version (``1.x``, ``0.x``): safe versions are per line."""
    exposure: Exposure
    exposure_reason: str
    action: SafeAction = "pin"
    """``pin`` to ``safe_version``; ``remove``: the package was injected by a compromised parent
    (it never had a legitimate version in this graph), so no version of it is safe."""
    safe_version: str | None = None
    safe_version_source: str
    note: str | None = None


class AffectedService(_Model):
    name: str
    account: str
    region: str
    ci_user: str | None = None
    ci_secrets: list[str] = []
    repository: str | None = None
    signing_certificate: str | None = None
    signing_secret: str | None = None
    deploy_target: dict[str, Any] | None = None
    audience: str | None = None
    audience_detail: dict[str, Any] | None = None
    packages: list[MatchedPackage]
    exposure: Exposure
    exposure_reason: str
    installs_in_window: list[datetime] = []
    safe_version: str | None = None
    safe_version_package: str | None = None
    safe_version_source: str | None = None
    pins: dict[str, str] = {}
    """This service's own pins, package -> safe version of *its* release line (what
    ``publish-update`` writes into the release manifest)."""
    remove: list[str] = []
    """Packages to drop from this service (injected by a compromised parent)."""
    errors: list[ServiceError] = []


class Confirmation(_Model):
    service: str
    package: str
    version: str | None
    ecosystem: str
    source: str
    path: list[str]
    kind: Literal["open-ended", "floating-no-history", "undecidable", "sha-pin"]
    reason: str


class ServiceVerdict(_Model):
    name: str
    verdict: Literal["affected", "needs-confirmation", "unaffected", "not-using", "unreadable"]
    exposure: Exposure | None = None
    reason: str


class SafeVersion(_Model):
    package: str
    ecosystem: str
    bad_version: str
    line: str | None = None
    safe_version: str | None
    action: SafeAction = "pin"
    source: str


class MatchResult(ActionResult):
    """Output of ``inventory.match_advisory``; ``affected`` drives the runbook's fan-out."""

    advisory: AdvisoryInfo
    window: ExposureWindow
    inventory: str
    affected: list[AffectedService]
    unaffected: list[str]
    needs_confirmation: list[Confirmation]
    safe_versions: dict[str, dict[str, str]]
    """package -> release line -> safe version, one entry per affected line
    (``{"axios": {"1.x": "1.14.0", "0.x": "0.30.3"}}``); injected packages are in ``remove``."""
    remove: list[str] = []
    """Packages whose answer is "remove it": injected by a compromised parent in the scoped fleet."""
    safe_version_details: list[SafeVersion]
    services: list[ServiceVerdict]
    errors: list[ServiceError] = []
    """Files that could not be read, per service (those services are reported ``unreadable``
    unless what could be read already makes them affected)."""
    warnings: list[str] = []
    scanned: dict[str, int] = {}


# --------------------------------------------------------------------------- fleet loading


@dataclass
class _Fleet:
    inventory: Inventory
    sources: dict[str, list[Source]] = field(default_factory=dict)
    manifest_specs: dict[str, dict[str, str]] = field(default_factory=dict)
    installs: dict[str, list[tuple[datetime, str | None]]] = field(default_factory=dict)
    errors: dict[str, list[ServiceError]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _parse_dt(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return _utc(value)
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return _utc(datetime.fromisoformat(value.strip().replace("Z", "+00:00")))
    except ValueError:
        return None


_TIME_KEYS = ("at", "timestamp", "time", "started_at", "created_at", "date")


def read_install_history(path: Path) -> list[tuple[datetime, str | None]]:
    """A JSON list / ``{"installs": [...]}`` or a CSV with a time column (``at``,
    ``timestamp``, ``started_at`` ...) and optional ``lockfile`` column. Naive times are UTC."""
    text = read_text_file(path)
    rows: list[dict[str, Any]]
    try:
        if path.suffix.lower() == ".csv" or not text.lstrip().startswith(("[", "{")):
            rows = list(csv.DictReader(io.StringIO(text)))
        else:
            data = json.loads(text)
            rows = data.get("installs", []) if isinstance(data, dict) else data
    except (ValueError, csv.Error) as exc:
        raise ConfigurationError(f"{path}: cannot read the install history: {exc}") from None
    if not isinstance(rows, list):
        raise ConfigurationError(f"{path}: an install history is a list of records")
    out: list[tuple[datetime, str | None]] = []
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ConfigurationError(f"{path}: install record {n} is not a record")
        at = next((_parse_dt(row.get(k)) for k in _TIME_KEYS if row.get(k)), None)
        if at is None:  # never quote the row: it is file content
            raise ConfigurationError(f"{path}: install record {n} has no readable time ({', '.join(_TIME_KEYS)})")
        out.append((at, row.get("lockfile") or None))
    return out


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Parsing builds millions of acyclic objects; the cyclic GC would rescan them over and over
    (3x slower on the bench). Reference counting still frees everything."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _load_fleet(inv: Inventory) -> _Fleet:
    with _no_cyclic_gc():
        return _load_fleet_inner(inv)


_READ_ERRORS = (StanchError, OSError, ValueError)


def _load_fleet_inner(inv: Inventory) -> _Fleet:
    """Parse every file once. A file that cannot be read becomes a :class:`ServiceError` of each
    service that lists it; the other files and services are still read."""
    fleet = _Fleet(inventory=inv)
    cache: dict[Path, Source] = {}
    failed: dict[Path, str] = {}

    def load(rel: str, service: str) -> Source:
        p = inv.resolve(rel).resolve()
        if p in failed:
            raise ConfigurationError(failed[p])
        if p not in cache:
            try:
                cache[p] = read_source(p, display=rel)
            except _READ_ERRORS as exc:
                failed[p] = _read_error(p, exc)
                raise ConfigurationError(failed[p]) from None
            fleet.warnings.extend(f"service {service}: {w}" for w in cache[p].warnings)
        return cache[p]

    for svc in inv.services:
        specs: dict[str, str] = {}
        srcs: list[Source] = []
        errors: list[ServiceError] = []

        def failure(rel: str, exc: BaseException, svc_name: str = svc.name, errs: list[ServiceError] = errors) -> None:
            errs.append(ServiceError(service=svc_name, file=rel, error=_read_error(inv.resolve(rel), exc)))

        for rel in svc.manifests:
            if rel.endswith("package.json"):
                try:
                    specs.update(read_manifest_specs(inv.resolve(rel)))
                except _READ_ERRORS as exc:
                    failure(rel, exc)
        for rel in [*svc.lockfiles, *svc.sboms, *svc.workflows]:
            try:
                srcs.append(load(rel, svc.name))
            except _READ_ERRORS as exc:
                failure(rel, exc)
        if not any(s.kind.startswith(("npm-lock", "pnpm", "yarn")) for s in srcs):
            for rel in svc.manifests:
                if rel.endswith("package.json") and not any(e.file == rel for e in errors):
                    try:
                        srcs.append(load(rel, svc.name))
                    except _READ_ERRORS as exc:
                        failure(rel, exc)
        fleet.sources[svc.name] = srcs
        fleet.manifest_specs[svc.name] = specs
        installs = [(_utc(i.at), i.lockfile) for i in svc.installs]
        if svc.install_history:
            try:
                installs.extend(read_install_history(inv.resolve(svc.install_history)))
            except _READ_ERRORS as exc:
                failure(svc.install_history, exc)
        fleet.installs[svc.name] = installs
        fleet.errors[svc.name] = errors
    return fleet


def _read_error(path: Path, exc: BaseException) -> str:
    """One line naming the file and what is wrong with it (no traceback, no file contents)."""
    if isinstance(exc, StanchError):
        return str(exc)
    if isinstance(exc, IsADirectoryError):
        return f"{path}: is a directory, not a file"
    if isinstance(exc, FileNotFoundError):
        return f"{path}: file not found"
    if isinstance(exc, PermissionError):
        return f"{path}: permission denied"
    if isinstance(exc, UnicodeDecodeError):
        return f"{path}: not UTF-8 text (a binary file?)"
    if isinstance(exc, OSError):
        return f"{path}: cannot read: {exc.strerror or exc}"
    return f"{path}: cannot read: {exc}"


# --------------------------------------------------------------------------- evaluation helpers


DEFAULT_LOOKBACK = timedelta(days=7)
"""How long before the advisory's earliest timestamp a bad release is assumed to have been live
when the record does not say when it was published (OSV has no field for that). Malicious npm
releases are usually reported within hours to days; pass ``live_from`` when it is known."""

_INTRODUCED_KEYS = ("introduced_at", "release_time", "published_at", "published")


def _record_times(adv: Advisory) -> tuple[list[datetime], list[datetime]]:
    """(explicit release times of the bad versions, every other time the record carries:
    ``published``, ``modified`` and the malicious-packages origins' ``modified_time`` /
    ``import_time``) — all of the latter are *after* the bad release went live."""
    introduced: list[datetime] = []
    for entry in adv.raw.get("affected") or ():
        ds = entry.get("database_specific") if isinstance(entry, dict) else None
        if isinstance(ds, dict):
            introduced.extend(t for k in _INTRODUCED_KEYS if (t := _parse_dt(ds.get(k))) is not None)
    seen = [t for t in (adv.published, adv.modified) if t is not None]
    ds_top = adv.raw.get("database_specific")
    origins = ds_top.get("malicious-packages-origins") if isinstance(ds_top, dict) else None
    for origin in origins if isinstance(origins, list) else ():
        if isinstance(origin, dict):
            seen.extend(t for k in ("modified_time", "import_time") if (t := _parse_dt(origin.get(k))) is not None)
    return introduced, seen


def _window(adv: Advisory, live_from: datetime | None, live_until: datetime | None) -> ExposureWindow:
    """The exposure window. Given bounds win; a given start after a given end is refused.
    Default end: the advisory's publication. Default start: a release time the record carries,
    else the record's earliest timestamp minus :data:`DEFAULT_LOOKBACK`, else unbounded."""
    if live_from is not None and live_until is not None and _utc(live_from) > _utc(live_until):
        raise InputError(
            f"exposure window is reversed: live_from {_utc(live_from).isoformat()} is after "
            f"live_until {_utc(live_until).isoformat()}"
        )
    w = ExposureWindow()
    notes: list[str] = []
    if live_until is not None:
        w.live_until, w.until_source = _utc(live_until), "input"
    elif adv.published is not None:
        w.live_until, w.until_source = adv.published, "advisory.published"
    if live_from is not None:
        w.live_from, w.from_source = _utc(live_from), "input"
        if w.until_source == "advisory.published" and w.live_until is not None and w.live_from > w.live_until:
            notes.append("live_from is after the advisory's publication: the window's end is left open")
            w.live_until, w.until_source = None, "unbounded"
        return w.model_copy(update={"note": "; ".join(notes) or None})
    introduced, seen = _record_times(adv)
    if introduced:
        w.live_from, w.from_source = min(introduced), "advisory.introduced"
        notes.append("start: the bad release's publication time in the advisory's database_specific")
    elif seen:
        w.live_from, w.from_source = min(seen) - DEFAULT_LOOKBACK, "advisory.lookback"
        notes.append(
            f"start: {DEFAULT_LOOKBACK.days} days before the advisory's earliest timestamp "
            f"({min(seen).isoformat()}); OSV does not say when the bad release was published — "
            "pass --live-from when it is known"
        )
    if w.live_from is not None and w.live_until is not None and w.live_from > w.live_until:
        notes.append("the derived start was after the given end: start left open")
        w.live_from, w.from_source = None, "unbounded"
    return w.model_copy(update={"note": "; ".join(notes) or None})


def _in_window(at: datetime, w: ExposureWindow) -> bool:
    return (w.live_from is None or at >= w.live_from) and (w.live_until is None or at <= w.live_until)


def _pin(found: Found, src: Source, specs: list[str | None], scheme: VersionScheme | None) -> Pin:
    if found.pin_hint:
        return found.pin_hint
    known = [s for s in specs if s is not None]
    is_lock = src.kind.startswith(_LOCKFILE_KINDS)
    if scheme is not None and any(not scheme.is_exact_spec(s) for s in known):
        return "floating"
    if known and len(known) == len(specs):
        return "exact" if scheme is not None else "unknown"
    if is_lock or (known and found.version is not None):
        return "locked"
    return "unknown"


def _safe_version(
    ap: AffectedPackage, scheme: VersionScheme | None, bad: str | None, verdict: Verdict | None = None
) -> tuple[str | None, str]:
    if ap.open_ended and verdict is not None and verdict.status == "open-ended":
        return None, "none: the advisory covers every version — remove the package"
    fixed = verdict.fixed if verdict is not None and verdict.fixed else None
    if fixed is None and bad is not None:
        fixed = ap._fixed_for(bad, scheme)
    if fixed:
        return fixed, "fixed"
    if scheme is None or bad is None:
        return None, "unknown: no fixed version in the advisory (check the registry)"
    cand = scheme.previous_patch(bad)
    for _ in range(50):
        if cand is None:
            break
        if ap.evaluate(cand, scheme).status == "not-affected":
            return cand, "previous-patch (verify on registry)"
        cand = scheme.previous_patch(cand)
    last = [v for r in ap.ranges for k, v in r.events if k == "last_affected"]
    if last:
        return None, f"none derivable: upgrade to a release after {last[-1]} (verify on registry)"
    return None, "none derivable offline: no fixed version and no clean earlier patch (check the registry)"


def _admitted_bad(ap: AffectedPackage, scheme: VersionScheme | None, specs: Iterable[str | None]) -> str | None:
    """The highest known-bad version that one of ``specs`` admits (a fresh install could get it)."""
    if scheme is None:
        return None
    best: str | None = None
    for spec in specs:
        if spec is None:
            continue
        for cand in ap.candidate_bad_versions():
            if scheme.spec_allows(spec, cand) and (best is None or scheme.compare(cand, best) > 0):
                best = cand
    return best


@dataclass
class _Eval:
    found: Found
    path: list[str]
    pin: Pin
    manifest_spec: str | None
    declared_spec: str | None
    verdict: Verdict
    admitted: str | None
    ap: AffectedPackage
    scheme: VersionScheme | None
    locked: bool = False
    """The version comes from a lockfile: ``npm ci`` / ``uv sync --frozen`` install exactly it,
    whatever range the manifest declares."""
    parent: PathStep | None = None


def _evaluate(svc: Service, fleet: _Fleet, src: Source, found: Found, ap: AffectedPackage) -> _Eval:
    scheme = scheme_for(ap.ecosystem)
    steps = src.path_to(found.node)
    path = [svc.name, *(s.label() for s in steps[1:])]
    specs = [s.spec for s in steps[1:]]
    manifest = fleet.manifest_specs.get(svc.name, {})
    if len(steps) > 1 and steps[1].name in manifest and base_ecosystem(ap.ecosystem) == "npm":
        specs[0] = manifest[steps[1].name]
    manifest_spec = specs[0] if specs else None
    declared_spec = specs[-1] if specs else None
    pin = _pin(found, src, specs, scheme)
    if found.commit:
        verdict = ap.evaluate_commit(found.commit)
        if verdict.status == "not-affected" and found.version:
            by_comment = ap.evaluate(found.version, scheme)
            if by_comment.status != "not-affected":
                verdict = Verdict(
                    "unknown",
                    f"commit pin {found.commit[:12]} is not a known-bad commit, but its comment says "
                    f"{found.version}, which the advisory covers ({by_comment.reason}): confirm the commit "
                    "predates the compromise",
                )
    elif found.version is None:
        admitted = _admitted_bad(ap, scheme, [declared_spec])
        if ap.open_ended:
            verdict = Verdict("open-ended", "all versions — needs analyst confirmation (no resolved version)")
        elif admitted:
            verdict = Verdict("not-affected", f"no resolved version; spec {declared_spec} admits {admitted}")
        elif declared_spec is None or scheme is None:
            verdict = Verdict("unknown", "no resolved version and no readable spec")
        else:
            verdict = Verdict("not-affected", f"spec {declared_spec} admits no known-bad version")
    elif found.pin_hint == "branch":
        verdict = Verdict("unknown", f"pinned to branch {found.ref!r}: its commit at install time is unknown")
    else:
        verdict = ap.evaluate(found.version, scheme)
    locked = src.kind.startswith(_LOCKFILE_KINDS) and found.version is not None and found.commit is None
    admitted = None
    if verdict.status == "not-affected" and pin in ("floating", "tag", "unknown", "branch") and not locked:
        admitted = _admitted_bad(ap, scheme, [declared_spec, manifest_spec] if len(specs) == 1 else [declared_spec])
    parent = steps[-2] if len(steps) > 2 else None
    return _Eval(found, path, pin, manifest_spec, declared_spec, verdict, admitted, ap, scheme, locked, parent)


def _exposure(
    ev: _Eval, installs: list[tuple[datetime, str | None]], w: ExposureWindow
) -> tuple[Exposure, str, list[datetime]]:
    relevant = [
        at
        for at, lock in installs
        if lock is None or lock == ev.found.source or Path(lock).name == Path(ev.found.source).name
    ]
    inside = sorted(at for at in relevant if _in_window(at, w))
    bad_reachable = ev.verdict.status == "affected" or ev.admitted is not None
    if bad_reachable:
        if inside:
            return (
                "exposed",
                f"{len(inside)} install(s) inside the window, first {inside[0].isoformat()}",
                inside,
            )
        if relevant and ev.verdict.status != "affected":
            return "not-exposed", "floating spec, but every recorded install is outside the window", []
        if relevant:
            return "unknown", "the resolved version is bad; no recorded install inside the window", []
        return "unknown", "no install history for this service", []
    if ev.locked:
        spec = f" under {ev.manifest_spec}" if ev.manifest_spec and ev.pin == "floating" else ""
        return (
            "pinned-clean",
            f"{ev.found.source} locks clean {ev.found.version}{spec}: an install from the lockfile "
            "(npm ci) installs what is locked, whatever the range admits",
            [],
        )
    if ev.pin in _IMMUTABLE_PINS:
        return "pinned-clean", f"{ev.pin} pin on a clean version ({ev.found.version or ev.found.commit})", []
    if ev.pin in ("floating", "tag") and ev.declared_spec is not None:
        return "not-exposed", f"spec {ev.declared_spec} admits no known-bad version", []
    return "unknown", "clean version, but how it is pinned is unknown", []


# --------------------------------------------------------------------------- matching


def _advisory_info(adv: Advisory) -> AdvisoryInfo:
    return AdvisoryInfo(
        id=adv.id,
        summary=adv.summary,
        aliases=list(adv.aliases),
        published=adv.published,
        modified=adv.modified,
        withdrawn=adv.withdrawn,
        source=adv.source,
        packages=list(dict.fromkeys(f"{a.ecosystem}/{a.name}" for a in adv.affected)),
        open_ended=list(dict.fromkeys(f"{a.ecosystem}/{a.name}" for a in adv.affected if a.open_ended)),
    )


def _advisory_safe_versions(
    adv: Advisory, removed: dict[str, str], affected_lines: set[tuple[str, str | None]]
) -> tuple[dict[str, dict[str, str]], list[SafeVersion]]:
    """One safe version per (package, major release line): the details cover every known-bad
    version of the advisory; the summary only the lines some service is affected on (a fleet on
    axios 1.x and 0.x gets ``{"axios": {"1.x": "1.14.0", "0.x": "0.30.3"}}``, never one for both).
    ``removed``: package -> why it is to be removed (injected), not pinned."""
    details: list[SafeVersion] = []
    best: dict[str, dict[str, str]] = {}
    for ap in adv.affected:
        scheme = scheme_for(ap.ecosystem)
        for bad in ap.candidate_bad_versions():
            line = scheme.line(bad) if scheme else None
            verdict = ap.evaluate(bad, scheme) if scheme else None
            safe, how = _safe_version(ap, scheme, bad, verdict)
            action: SafeAction = "pin" if safe else "none"
            if ap.open_ended:
                safe, how = (
                    None,
                    "none: the advisory covers every version (open-ended) — needs analyst confirmation",
                )
            elif normalize_name(ap.ecosystem, ap.name) in removed:
                safe, how, action = None, removed[normalize_name(ap.ecosystem, ap.name)], "remove"
            details.append(
                SafeVersion(
                    package=ap.name,
                    ecosystem=ap.ecosystem,
                    bad_version=bad,
                    line=line,
                    safe_version=safe,
                    action=action,
                    source=how,
                )
            )
            if safe and scheme and action == "pin" and (normalize_name(ap.ecosystem, ap.name), line) in affected_lines:
                lines = best.setdefault(ap.name, {})
                key = line or bad
                if key not in lines or scheme.compare(safe, lines[key]) > 0:
                    lines[key] = safe
    return best, details


def _injected_by(ev: _Eval, known: Sequence[Advisory], dirs: Sequence[str | Path]) -> str | None:
    """``"axios 1.14.1 (MAL-2026-2307)"`` when the package's parent on its dependency path is
    itself a known-bad release: the package entered the graph with the compromise (like
    plain-crypto-js, added by the malicious axios releases), so it never had a legitimate version
    here and the answer is to remove it (pin the parent), not the attacker's previous patch."""
    parent = ev.parent
    if parent is None or not parent.version:
        return None
    eco = ev.found.ecosystem
    scheme = scheme_for(eco)
    for adv in known:
        for ap in adv.affected:
            if (
                ap.key == (base_ecosystem(eco), normalize_name(eco, parent.name))
                and ap.evaluate(parent.version, scheme).status == "affected"
            ):
                return f"{parent.name} {parent.version} ({adv.id})"
    adv_id = known_bad_release(eco, parent.name, parent.version, scheme, dirs)
    return f"{parent.name} {parent.version} ({adv_id})" if adv_id else None


def _service_pins(service: str, matched: list[MatchedPackage]) -> tuple[dict[str, str], list[str], list[str]]:
    """(package -> safe version, packages to remove, warnings) for one service. A package the
    service has on two release lines gets the direct dependency's line and a warning naming the
    other (a nested override is for the analyst)."""
    pins: dict[str, str] = {}
    chosen: dict[str, MatchedPackage] = {}
    warnings: list[str] = []
    for m in sorted(matched, key=lambda m: len(m.path)):
        if m.action != "pin" or not m.safe_version:
            continue
        first = chosen.get(m.name)
        if first is None:
            chosen[m.name], pins[m.name] = m, m.safe_version
        elif first.safe_version != m.safe_version:
            warnings.append(
                f"{service}: {m.name} is on two release lines; the release pins {first.safe_version} "
                f"({' → '.join(first.path)}), and {' → '.join(m.path)} needs {m.safe_version} (add an override)"
            )
    remove = sorted({m.name for m in matched if m.action == "remove"} - set(pins))
    return pins, remove, warnings


def _confirmation(service: str, ev: _Eval, src: Source, kind: Any, reason: str) -> Confirmation:
    return Confirmation(
        service=service,
        package=ev.found.name,
        version=ev.found.version or ev.found.commit,
        ecosystem=ev.found.ecosystem,
        source=src.path,
        path=ev.path,
        kind=kind,
        reason=reason,
    )


def _match(
    adv: Advisory,
    fleet: _Fleet,
    live_from: datetime | None,
    live_until: datetime | None,
    known: Sequence[Advisory] = (),
    dirs: Sequence[str | Path] = (),
) -> MatchResult:
    inv = fleet.inventory
    w = _window(adv, live_from, live_until)
    known = [adv, *(k for k in known if k is not adv)]
    affected: list[AffectedService] = []
    unaffected: list[str] = []
    confirmations: list[Confirmation] = []
    verdicts: list[ServiceVerdict] = []
    warnings: list[str] = []
    errors: list[ServiceError] = []
    removals: dict[str, str] = {}
    kept: set[str] = set()
    if adv.withdrawn is not None:
        warnings.append(f"{adv.id} was withdrawn on {adv.withdrawn.isoformat()}")
    packages_scanned = 0
    for svc in inv.services:
        sources = fleet.sources[svc.name]
        packages_scanned += sum(s.package_count for s in sources)
        installs = fleet.installs[svc.name]
        matched: list[MatchedPackage] = []
        svc_conf: list[Confirmation] = []
        clean: list[tuple[Exposure, str]] = []
        in_window: set[datetime] = set()
        for ap in adv.affected:
            eco = base_ecosystem(ap.ecosystem)
            for src in sources:
                for found in src.find(eco, ap.name):
                    ev = _evaluate(svc, fleet, src, found, ap)
                    exposure, why, inside = _exposure(ev, installs, w)
                    status = ev.verdict.status

                    if status == "open-ended":
                        svc_conf.append(_confirmation(svc.name, ev, src, "open-ended", ev.verdict.reason))
                    elif status == "unknown":
                        svc_conf.append(
                            _confirmation(
                                svc.name,
                                ev,
                                src,
                                "sha-pin" if ev.found.commit else "undecidable",
                                ev.verdict.reason,
                            )
                        )
                    elif status == "affected" or (ev.admitted and exposure == "exposed"):
                        bad = ev.found.version if status == "affected" else ev.admitted
                        safe, how = _safe_version(ap, ev.scheme, bad, ev.verdict if status == "affected" else None)
                        action: SafeAction = "pin" if safe else "none"
                        injector = _injected_by(ev, known, dirs) if status == "affected" else None
                        if injector is not None:
                            offered = f"{ev.found.name} {safe}" if safe else "a previous patch"
                            safe, action = None, "remove"
                            how = (
                                f"remove: injected by the compromised {injector}; it never had a legitimate "
                                f"version here (the offered {offered} would be the attacker's) — "
                                "pin the parent to its safe version"
                            )
                        reason = (
                            ev.verdict.reason
                            if status == "affected"
                            else (
                                f"{ev.found.version} is locked now, but spec {ev.declared_spec} admitted "
                                f"{ev.admitted} and the service installed while it was live"
                            )
                        )
                        matched.append(
                            MatchedPackage(
                                name=ev.found.name,
                                version=ev.found.version,
                                ecosystem=ev.found.ecosystem,
                                source=src.path,
                                path=ev.path,
                                pin=ev.pin,
                                manifest_spec=ev.manifest_spec,
                                declared_spec=ev.declared_spec,
                                commit=ev.found.commit,
                                verdict="affected" if status == "affected" else "floating-exposed",
                                reason=reason,
                                bad_version=bad,
                                line=ev.scheme.line(bad) if ev.scheme else None,
                                exposure=exposure,
                                exposure_reason=why,
                                action=action,
                                safe_version=safe,
                                safe_version_source=how,
                                note=ev.found.note,
                            )
                        )
                        in_window.update(inside)
                    elif ev.admitted and exposure == "unknown":
                        svc_conf.append(
                            _confirmation(
                                svc.name,
                                ev,
                                src,
                                "floating-no-history",
                                f"spec {ev.declared_spec} admits bad {ev.admitted} "
                                f"(locked {ev.found.version}); "
                                "no install history to rule out a fresh install while it was live",
                            )
                        )
                    else:
                        clean.append((exposure, why))
        confirmations.extend(svc_conf)
        svc_errors = fleet.errors.get(svc.name, [])
        errors.extend(svc_errors)
        if matched:
            worst = max(matched, key=lambda m: _EXPOSURE_RANK[m.exposure])
            pick = next((m for m in matched if len(m.path) == 2 and m.safe_version), None) or next(
                (m for m in matched if m.safe_version), None
            )
            pins, remove, pin_warnings = _service_pins(svc.name, matched)
            warnings.extend(pin_warnings)
            for m in matched:
                if m.action == "remove":
                    removals.setdefault(normalize_name(m.ecosystem, m.name), m.safe_version_source)
                else:
                    kept.add(normalize_name(m.ecosystem, m.name))
            dt = svc.deploy_target.model_dump(exclude_none=True) if svc.deploy_target else None
            aud = inv.audiences.get(svc.audience) if svc.audience else None
            affected.append(
                AffectedService(
                    name=svc.name,
                    account=svc.account,
                    region=svc.region,
                    ci_user=svc.ci_user,
                    ci_secrets=list(svc.ci_secrets),
                    repository=svc.repository,
                    signing_certificate=svc.signing_certificate,
                    signing_secret=svc.signing_secret,
                    deploy_target=dt,
                    audience=svc.audience,
                    audience_detail=aud.model_dump() if aud else None,
                    packages=matched,
                    exposure=worst.exposure,
                    exposure_reason=worst.exposure_reason,
                    installs_in_window=sorted(in_window),
                    safe_version=pick.safe_version if pick else None,
                    safe_version_package=pick.name if pick else None,
                    safe_version_source=pick.safe_version_source if pick else None,
                    pins=pins,
                    remove=remove,
                    errors=svc_errors,
                )
            )
            verdicts.append(
                ServiceVerdict(
                    name=svc.name,
                    verdict="affected",
                    exposure=worst.exposure,
                    reason="; ".join(dict.fromkeys(m.reason for m in matched)),
                )
            )
        elif svc_errors:
            verdicts.append(
                ServiceVerdict(
                    name=svc.name,
                    verdict="unreadable",
                    exposure="unknown",
                    reason="; ".join(e.error for e in svc_errors)
                    + ("; " + "; ".join(c.reason for c in svc_conf) if svc_conf else ""),
                )
            )
        elif svc_conf:
            verdicts.append(
                ServiceVerdict(
                    name=svc.name,
                    verdict="needs-confirmation",
                    exposure="unknown",
                    reason="; ".join(dict.fromkeys(c.reason for c in svc_conf)),
                )
            )
        else:
            unaffected.append(svc.name)
            if clean:
                exp, why = max(clean, key=lambda c: _EXPOSURE_RANK[c[0]])
                verdicts.append(ServiceVerdict(name=svc.name, verdict="unaffected", exposure=exp, reason=why))
            else:
                verdicts.append(
                    ServiceVerdict(name=svc.name, verdict="not-using", reason="does not depend on the package")
                )
    removed = {name: why for name, why in removals.items() if name not in kept}
    lines = {(normalize_name(m.ecosystem, m.name), m.line) for svc in affected for m in svc.packages}
    safe_versions, safe_details = _advisory_safe_versions(adv, removed, lines)
    if not inv.services:
        warnings.append(f"{inv.path or 'the inventory'} lists no services (services: []): nothing was scoped")
    return MatchResult(
        advisory=_advisory_info(adv),
        window=w,
        inventory=str(inv.path) if inv.path else "",
        affected=affected,
        unaffected=unaffected,
        needs_confirmation=confirmations,
        safe_versions=safe_versions,
        remove=sorted(removed),
        safe_version_details=safe_details,
        services=verdicts,
        errors=errors,
        warnings=[*warnings, *fleet.warnings],
        scanned={
            "services": len(inv.services),
            "sources": sum(len(s) for s in fleet.sources.values()),
            "packages": packages_scanned,
        },
    )


# --------------------------------------------------------------------------- public API


def _dirs(advisories_dir: str | Path | Sequence[str | Path] | None) -> list[str | Path]:
    if advisories_dir is None:
        return []
    if isinstance(advisories_dir, str | Path):
        return [advisories_dir]
    return list(advisories_dir)


def scope_many(
    advisory_refs: Sequence[str],
    inventory_path: str | Path,
    live_from: datetime | None = None,
    live_until: datetime | None = None,
    advisories_dir: str | Path | Sequence[str | Path] | None = None,
) -> list[MatchResult]:
    """Match several advisories against one inventory, parsing every file once."""
    dirs = _dirs(advisories_dir)
    check_advisory_dirs(dirs)
    advisories = [resolve_advisory(ref, dirs) for ref in advisory_refs]
    with _no_cyclic_gc():
        fleet = _load_fleet_inner(load_inventory(inventory_path))
        return [_match(adv, fleet, live_from, live_until, advisories, dirs) for adv in advisories]


def scope(
    advisory_ref: str,
    inventory_path: str | Path,
    live_from: datetime | None = None,
    live_until: datetime | None = None,
    advisories_dir: str | Path | Sequence[str | Path] | None = None,
) -> MatchResult:
    """Who is affected by one advisory (an OSV id or a path to an OSV JSON file)."""
    return scope_many([advisory_ref], inventory_path, live_from, live_until, advisories_dir)[0]


_EXPOSURE_STYLE = {
    "exposed": "bold red",
    "unknown": "yellow",
    "not-exposed": "green",
    "pinned-clean": "green",
}


def _fmt(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M UTC") if dt else "unbounded"


def _safe_cell(pkg: MatchedPackage) -> str:
    if pkg.action == "remove":
        return f"[bold]remove[/] ({pkg.safe_version_source})"
    line = f" for {pkg.line}" if pkg.line and pkg.safe_version else ""
    return f"{pkg.safe_version or '—'}{line} ({pkg.safe_version_source})"


def summarize_safe_versions(result: MatchResult) -> str:
    """``axios 1.14.0 (1.x), 0.30.3 (0.x); remove plain-crypto-js`` — one per affected line."""
    parts = [
        f"{name} " + ", ".join(f"{v} ({line})" for line, v in lines.items())
        for name, lines in result.safe_versions.items()
    ]
    parts += [f"remove {name}" for name in result.remove]
    return "; ".join(parts) or "none"


def scope_notes(result: MatchResult) -> list[str]:
    """What the terminal must say besides the table: unreadable files per service, warnings
    (e.g. every line of a requirements file skipped), an empty inventory, the window's origin."""
    notes = [f"error: service {e.service}: {e.error}" for e in result.errors]
    notes += [f"warning: {w}" for w in result.warnings]
    if result.window.note:
        notes.append(f"window: {result.window.note}")
    return notes


def render_scope_table(result: MatchResult) -> Table:
    """One row per affected package, then the rows that need an analyst, then unreadable files."""
    adv, w = result.advisory, result.window
    table = Table(
        title=f"{adv.id}: {adv.summary}",
        caption=(
            f"window {_fmt(w.live_from)} ({w.from_source}) → {_fmt(w.live_until)} ({w.until_source}); "
            f"{len(result.affected)} affected, {len(result.needs_confirmation)} to confirm, "
            f"{len(result.unaffected)} unaffected"
            + (f", {len({e.service for e in result.errors})} unreadable" if result.errors else "")
            + f"; safe: {summarize_safe_versions(result)}"
            + (f"; open-ended: {', '.join(adv.open_ended)}" if adv.open_ended else "")
        ),
    )
    # three columns so it reads at 80 columns and piped: an account id is never split, the
    # package, its path and the safe version stack in one wrapped cell
    table.box = box.SIMPLE_HEAD
    table.add_column("Service / account", overflow="fold", min_width=14, max_width=26)
    table.add_column("Exposure", overflow="fold", max_width=14)
    table.add_column("Package · path · safe version", overflow="fold", ratio=1, min_width=24)
    for svc in result.affected:
        for pkg in svc.packages:
            spec = f" ({pkg.manifest_spec})" if pkg.manifest_spec else ""
            table.add_row(
                f"{svc.name}\n{svc.account}",
                f"[{_EXPOSURE_STYLE[pkg.exposure]}]{pkg.exposure}[/]",
                f"{pkg.name} {pkg.version or pkg.commit or ''}".strip() + f" · {pkg.pin}{spec}"
                + f"\n[dim]via[/] {' → '.join(pkg.path)}\n[dim]safe:[/] {_safe_cell(pkg)}",
            )
    for c in result.needs_confirmation:
        label = (
            "all versions — needs analyst confirmation" if c.kind == "open-ended" else f"needs confirmation ({c.kind})"
        )
        table.add_row(
            c.service,
            f"[yellow]{label}[/]",
            f"{c.package} {c.version or ''}".strip() + f"\n[dim]via[/] {' → '.join(c.path)}",
        )
    for e in result.errors:
        table.add_row(e.service, "[bold red]unreadable[/]", f"{e.file or ''}\n{e.error}".strip())
    return table
