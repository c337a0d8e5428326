"""Version semantics per OSV ecosystem, delegated to maintained libraries.

Owns: turning an ecosystem's version strings into comparable keys, telling whether a manifest
spec is an exact pin or a floating range, whether a spec admits a given version, and the
"previous patch release" derivation used for safe-version suggestions. Also package-name
normalisation per ecosystem.

Libraries (see docs/dependencies.md): npm, Go, crates.io and GitHub Actions tags use
``node-semver`` (a port of npm's semver: prerelease rules and range grammar included); PyPI uses
``packaging`` (PEP 440 versions and specifiers). No comparison is hand-rolled. Ecosystems with no
library here (Maven, NuGet, RubyGems, Packagist, distro packages ...) get ``None`` from
:func:`scheme_for`, and callers must report a name match there as "needs confirmation" instead
of guessing.

Must not touch: files, advisories, inventories (pure functions of strings), ``flows``,
``prefect``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nodesemver
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

__all__ = [
    "VersionScheme",
    "base_ecosystem",
    "is_commit_sha",
    "normalize_name",
    "scheme_for",
]

_SHA_RE = re.compile(r"^[0-9a-fA-F]{40}$")


def is_commit_sha(ref: str | None) -> bool:
    return bool(ref) and bool(_SHA_RE.match(ref or ""))


def base_ecosystem(ecosystem: str) -> str:
    """``"Debian:11"`` -> ``"Debian"``; ``"npm"`` -> ``"npm"``."""
    return ecosystem.split(":", 1)[0].strip()


def normalize_name(ecosystem: str, name: str) -> str:
    """The key two package names are compared on, per ecosystem."""
    eco = base_ecosystem(ecosystem)
    if eco == "PyPI":
        return canonicalize_name(name)
    if eco == "GitHub Actions":
        # owner/repo is case-insensitive on GitHub; a sub-path action belongs to its repo.
        parts = name.strip("/").split("/")
        return "/".join(parts[:2]).lower()
    return name


@dataclass(frozen=True)
class VersionScheme:
    """How one ecosystem compares versions and reads specs.

    ``key(v)`` raises ``ValueError`` for a version the library cannot parse.
    ``spec_allows(spec, v)`` returns ``None`` when the spec is not a registry range
    (git URL, file path, workspace, tag name ...).
    """

    name: str
    key: Callable[[str], Any]
    is_exact_spec: Callable[[str], bool]
    spec_allows: Callable[[str, str], bool | None]
    release_parts: Callable[[str], tuple[tuple[int, ...], bool] | None]
    make_release: Callable[[tuple[int, ...]], str]

    def compare(self, a: str, b: str) -> int:
        ka, kb = self.key(a), self.key(b)
        return (ka > kb) - (ka < kb)

    def valid(self, v: str) -> bool:
        try:
            self.key(v)
        except ValueError:
            return False
        return True

    def line(self, v: str | None) -> str | None:
        """The major release line of ``v``: ``1.14.1`` -> ``1.x``, ``0.30.4`` -> ``0.x``;
        ``None`` when the version has no readable release number."""
        parts = self.release_parts(v) if v else None
        if parts is None or not parts[0]:
            return None
        return f"{parts[0][0]}.x"

    def previous_patch(self, v: str) -> str | None:
        """``1.14.1`` -> ``1.14.0``; ``None`` when patch is 0 or the version is a prerelease."""
        parts = self.release_parts(v)
        if parts is None:
            return None
        release, pre = parts
        if pre or len(release) < 3 or release[2] <= 0:
            return None
        return self.make_release((release[0], release[1], release[2] - 1, *release[3:]))


# --------------------------------------------------------------------------- node-semver family


class _SemverKey:
    """Total order over node-semver versions (``SemVer`` objects only offer ``compare``)."""

    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v

    def __lt__(self, other: _SemverKey) -> bool:
        return bool(self.v.compare(other.v) < 0)

    def __gt__(self, other: _SemverKey) -> bool:
        return bool(self.v.compare(other.v) > 0)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _SemverKey) and self.v.compare(other.v) == 0

    def __le__(self, other: _SemverKey) -> bool:
        return not self.__gt__(other)

    def __ge__(self, other: _SemverKey) -> bool:
        return not self.__lt__(other)

    def __hash__(self) -> int:
        return hash(str(self.v))


@functools.lru_cache(maxsize=65536)
def _semver(v: str) -> Any:
    try:
        parsed = nodesemver.make_semver(v.strip(), loose=True)
    except (ValueError, TypeError):
        raise ValueError(f"not a semver version: {v!r}") from None
    return parsed


def _semver_key(v: str) -> _SemverKey:
    return _SemverKey(_semver(v))


def _npm_spec(spec: str) -> str | None:
    """The semver range inside an npm dependency spec, or ``None`` for git/file/url specs."""
    s = spec.strip()
    if s.startswith("npm:"):
        # alias: "npm:real-name@^1.2.3"
        s = s[4:]
        at = s.rfind("@")
        s = s[at + 1 :] if at > 0 else "*"
    if any(s.startswith(p) for p in ("git", "http:", "https:", "file:", "link:", "workspace:", "github:")):
        return None
    if "/" in s and not s.startswith(("<", ">", "=", "~", "^")):
        return None  # "user/repo" GitHub shorthand
    return s or "*"


def _npm_exact(spec: str) -> bool:
    s = _npm_spec(spec)
    if s is None:
        return False
    s = s.lstrip("=").strip()
    try:
        return nodesemver.valid(s, loose=True) is not None
    except (ValueError, TypeError):
        return False


def _npm_allows(spec: str, v: str) -> bool | None:
    s = _npm_spec(spec)
    if s is None:
        return None
    try:
        if nodesemver.valid_range(s, loose=True) is None:
            return None
        return bool(nodesemver.satisfies(v, s, loose=True))
    except (ValueError, TypeError):
        return None


def _semver_parts(v: str) -> tuple[tuple[int, ...], bool] | None:
    try:
        sv = _semver(v)
    except ValueError:
        return None
    return (int(sv.major), int(sv.minor), int(sv.patch)), bool(sv.prerelease)


def _strip_v(v: str) -> str:
    v = v.strip()
    return v[1:] if v[:1] in ("v", "V") and v[1:2].isdigit() else v


def _go_key(v: str) -> _SemverKey:
    return _semver_key(_strip_v(v))


def _go_parts(v: str) -> tuple[tuple[int, ...], bool] | None:
    return _semver_parts(_strip_v(v))


def gha_tag_version(ref: str) -> tuple[str, bool] | None:
    """A GitHub Actions tag as a semver: ``v45`` -> (``45.0.0``, floating=True);
    ``v45.0.7`` -> (``45.0.7``, False). ``None`` for branch names and SHAs."""
    m = re.match(r"^[vV]?(\d+)(?:\.(\d+))?(?:\.(\d+))?([-+].*)?$", ref.strip())
    if not m:
        return None
    major, minor, patch, rest = m.groups()
    floating = minor is None or patch is None
    return f"{major}.{minor or 0}.{patch or 0}{rest or ''}", floating


def _gha_key(v: str) -> _SemverKey:
    tv = gha_tag_version(v)
    if tv is None:
        raise ValueError(f"not a release tag: {v!r}")
    return _semver_key(tv[0])


def _gha_parts(v: str) -> tuple[tuple[int, ...], bool] | None:
    tv = gha_tag_version(v)
    return _semver_parts(tv[0]) if tv else None


def _gha_allows(spec: str, v: str) -> bool | None:
    tv, vv = gha_tag_version(spec), gha_tag_version(v)
    if tv is None or vv is None:
        return None
    ver, floating = tv
    if not floating:
        return bool(_semver_key(vv[0]) == _semver_key(ver))
    rng = spec.strip().lstrip("vV") + ".x"
    return bool(nodesemver.satisfies(vv[0], rng, loose=True))


def _gha_exact(spec: str) -> bool:
    tv = gha_tag_version(spec)
    return tv is not None and not tv[1]


# --------------------------------------------------------------------------- PEP 440


@functools.lru_cache(maxsize=65536)
def _pep440(v: str) -> Version:
    try:
        return Version(v)
    except InvalidVersion:
        raise ValueError(f"not a PEP 440 version: {v!r}") from None


def _pypi_spec(spec: str) -> SpecifierSet | None:
    try:
        return SpecifierSet(spec)
    except InvalidSpecifier:
        return None


def _pypi_exact(spec: str) -> bool:
    ss = _pypi_spec(spec)
    if ss is None:
        return False
    items = list(ss)
    return len(items) == 1 and items[0].operator in ("==", "===") and not items[0].version.endswith(".*")


def _pypi_allows(spec: str, v: str) -> bool | None:
    ss = _pypi_spec(spec)
    if ss is None:
        return None
    try:
        return ss.contains(_pep440(v), prereleases=True)
    except ValueError:
        return None


def _pypi_parts(v: str) -> tuple[tuple[int, ...], bool] | None:
    try:
        pv = _pep440(v)
    except ValueError:
        return None
    release = tuple(pv.release) + (0,) * max(0, 3 - len(pv.release))
    return release, bool(pv.is_prerelease or pv.is_devrelease or pv.local)


def _semver_release(parts: tuple[int, ...]) -> str:
    return ".".join(str(p) for p in parts[:3])


def _go_release(parts: tuple[int, ...]) -> str:
    return "v" + _semver_release(parts)


def _pep440_release(parts: tuple[int, ...]) -> str:
    return ".".join(str(p) for p in parts)


_NPM = VersionScheme("npm (node-semver)", _semver_key, _npm_exact, _npm_allows, _semver_parts, _semver_release)
_CRATES = VersionScheme("crates.io (node-semver)", _semver_key, _npm_exact, _npm_allows, _semver_parts, _semver_release)
_GO = VersionScheme(
    "Go (node-semver, v-prefix stripped)",
    _go_key,
    lambda s: _npm_exact(_strip_v(s)),
    lambda s, v: _npm_allows(_strip_v(s), _strip_v(v)),
    _go_parts,
    _go_release,
)
_PYPI = VersionScheme("PyPI (packaging, PEP 440)", _pep440, _pypi_exact, _pypi_allows, _pypi_parts, _pep440_release)
_GHA = VersionScheme(
    "GitHub Actions (release tags via node-semver)",
    _gha_key,
    _gha_exact,
    _gha_allows,
    _gha_parts,
    lambda parts: "v" + _semver_release(parts),
)

_SCHEMES: dict[str, VersionScheme] = {
    "npm": _NPM,
    "PyPI": _PYPI,
    "GitHub Actions": _GHA,
    "Go": _GO,
    "crates.io": _CRATES,
}


def scheme_for(ecosystem: str) -> VersionScheme | None:
    """The version scheme of an OSV ecosystem, or ``None`` when no library covers it here."""
    return _SCHEMES.get(base_ecosystem(ecosystem))
