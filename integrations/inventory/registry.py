"""Safe versions checked against the package registry instead of guessed.

Owns: ``registry_versions`` (one metadata request per package: the npm registry's abbreviated
document, PyPI's JSON API) and ``check_safe_versions(result, advisory, settings)``, which takes a
``MatchResult`` and replaces every safe version derived offline (a fixed version from the advisory,
or the previous patch) by one the registry confirms: it exists, it is not deprecated (npm) or
yanked (PyPI), and the advisory does not cover it. When the derived version fails, the closest
clean release on the same major line is chosen (below the bad version for a guess, from the fixed
version up for a fix). When the registry cannot be reached, the derived version stays, labelled
as an unverified guess. Services' pins and the run-level safe versions are recomputed.

With ``STANCH_NPM_REGISTRY_URL`` / ``STANCH_PYPI_URL`` empty nothing is fetched and results are
unchanged. Must not touch: ``flows``, ``prefect``, AWS or Slack clients.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import urllib3

from integrations.inventory.match import MatchResult, _service_pins
from integrations.inventory.osv import Advisory, AffectedPackage
from integrations.inventory.versions import VersionScheme, base_ecosystem, normalize_name, scheme_for
from integrations.settings import StanchSettings

__all__ = ["RegistryVersions", "check_safe_versions", "registry_versions"]

_http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=20))
_NPM_ACCEPT = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8"
MAX_BYTES = 32 * 1024 * 1024


@dataclass
class RegistryVersions:
    """What the registry says about one package: every published version, and why some are unusable."""

    registry: str
    versions: set[str] = field(default_factory=set)
    unusable: dict[str, str] = field(default_factory=dict)


def _get(url: str, accept: str) -> tuple[int, bytes] | None:
    try:
        resp = _http.request("GET", url, headers={"Accept": accept}, preload_content=False)
        body = resp.read(MAX_BYTES + 1)
        resp.release_conn()
    except urllib3.exceptions.HTTPError:
        return None
    return (resp.status, body) if len(body) <= MAX_BYTES else None


def registry_versions(ecosystem: str, name: str, settings: StanchSettings) -> RegistryVersions | None:
    """The package's versions at its registry; None when the registry cannot be asked (no URL for this
    ecosystem, unreachable, an error answer). An unknown package has no versions."""
    eco = base_ecosystem(ecosystem)
    if eco == "npm" and settings.npm_registry_url:
        got = _get(f"{settings.npm_registry_url.rstrip('/')}/{quote(name, safe='@')}", _NPM_ACCEPT)
        if got is None or got[0] not in (200, 404):
            return None
        out = RegistryVersions(registry="npm")
        if got[0] == 200:
            for v, meta in (json.loads(got[1]).get("versions") or {}).items():
                out.versions.add(v)
                if isinstance(meta, dict) and meta.get("deprecated"):
                    out.unusable[v] = "deprecated"
        return out
    if eco == "PyPI" and settings.pypi_url:
        got = _get(f"{settings.pypi_url.rstrip('/')}/pypi/{quote(name, safe='')}/json", "application/json")
        if got is None or got[0] not in (200, 404):
            return None
        out = RegistryVersions(registry="PyPI")
        if got[0] == 200:
            for v, files in (json.loads(got[1]).get("releases") or {}).items():
                out.versions.add(v)
                if not files:
                    out.unusable[v] = "has no files"
                elif all(f.get("yanked") for f in files):
                    out.unusable[v] = "yanked"
        return out
    return None


def _choose(ap: AffectedPackage, scheme: VersionScheme, bad: str, derived: str, how: str,
            reg: RegistryVersions) -> tuple[str | None, str]:
    def problem(v: str) -> str | None:
        if v not in reg.versions:
            return f"not on {reg.registry}"
        if v in reg.unusable:
            return reg.unusable[v]
        if ap.evaluate(v, scheme).status != "not-affected":
            return "covered by the advisory"
        return None

    why = problem(derived)
    if why is None:
        return derived, f"{how}; checked on {reg.registry}: exists, not deprecated/yanked, not in the advisory"
    line = scheme.line(bad)
    clean = [v for v in reg.versions if scheme.line(v) == line and problem(v) is None]
    if how.startswith("fixed"):
        pool = [v for v in clean if scheme.compare(v, derived) >= 0]
        pick = min(pool, key=_key(scheme)) if pool else None
    else:
        pool = [v for v in clean if scheme.compare(v, bad) < 0]
        pick = max(pool, key=_key(scheme)) if pool else None
    if pick is None:
        return None, f"none on {reg.registry}: {derived} is {why} and no clean release on the {line} line"
    return pick, f"{reg.registry}: {derived} is {why}; {pick} is the closest clean release on the {line} line"


def _key(scheme: VersionScheme) -> Callable[[str], Any]:
    return functools.cmp_to_key(scheme.compare)


def check_safe_versions(result: MatchResult, advisory: Advisory, settings: StanchSettings) -> MatchResult:
    """``result`` with its safe versions confirmed (or replaced) by the registries; see module doc."""
    if not settings.npm_registry_url and not settings.pypi_url:
        return result
    cache: dict[tuple[str, str], RegistryVersions | None] = {}
    decided: dict[tuple[str, str, str], tuple[str | None, str]] = {}

    def decide(eco: str, name: str, bad: str, derived: str, how: str) -> tuple[str | None, str]:
        key = (eco, normalize_name(eco, name), bad)
        if key in decided:
            return decided[key]
        ap = next((a for a in advisory.affected if a.key == (base_ecosystem(eco), normalize_name(eco, name))), None)
        scheme = scheme_for(eco)
        if ap is None or scheme is None:
            return derived, how
        pkg = (base_ecosystem(eco), normalize_name(eco, name))
        if pkg not in cache:
            cache[pkg] = registry_versions(eco, name, settings)
        reg = cache[pkg]
        if reg is None:
            decided[key] = (derived, f"{how}; registry unreachable: an unverified guess")
        else:
            decided[key] = _choose(ap, scheme, bad, derived, how, reg)
        return decided[key]

    for d in result.safe_version_details:
        if d.action == "pin" and d.safe_version:
            d.safe_version, d.source = decide(d.ecosystem, d.package, d.bad_version, d.safe_version, d.source)
            d.action = "pin" if d.safe_version else "none"
    for svc in result.affected:
        for m in svc.packages:
            if m.action == "pin" and m.safe_version and m.bad_version:
                m.safe_version, m.safe_version_source = decide(
                    m.ecosystem, m.name, m.bad_version, m.safe_version, m.safe_version_source)
                m.action = "pin" if m.safe_version else "none"
        svc.pins, svc.remove, _ = _service_pins(svc.name, svc.packages)
        pick = next((m for m in svc.packages if m.action == "pin" and m.safe_version), None)
        if pick is not None:
            svc.safe_version, svc.safe_version_package = pick.safe_version, pick.name
            svc.safe_version_source = pick.safe_version_source
    for name, lines in result.safe_versions.items():
        for line in list(lines):
            match = [d for d in result.safe_version_details if d.package == name and d.line == line and d.safe_version]
            if match:
                scheme = scheme_for(match[0].ecosystem)
                best = match[0].safe_version or ""
                for d in match[1:]:
                    if scheme is not None and d.safe_version and scheme.compare(d.safe_version, best) > 0:
                        best = d.safe_version
                lines[line] = best
            else:
                del lines[line]
    return result
