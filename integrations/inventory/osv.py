"""OSV advisories: loading, schema validation, lookup by id, and "is this version affected".

Owns: reading OSV records (schema 1.x, validated against the vendored ``osv-schema.json``) from a
file, from every ``*.json`` under a directory laid out like the OpenSSF malicious-packages
database (``osv/malicious/<ecosystem>/<name>/<ID>.json``), or by id from a search path (explicit
dirs, ``settings.advisories_dir``, then the bundled ``advisories/`` directory); evaluating
``versions`` lists and ``SEMVER`` / ``ECOSYSTEM`` / ``GIT`` ranges (introduced / fixed /
last_affected / limit) per the OSV spec's evaluation algorithm; recognising open-ended ranges
(``introduced: "0"`` with no upper bound), which are never reported as a plain match; and the
known-bad commits list for commit-pinned GitHub Actions.

Must not touch: inventories, lockfiles, result models, ``flows``, ``prefect``.
"""

from __future__ import annotations

import functools
import glob
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from jsonschema import Draft202012Validator

from integrations.errors import ConfigurationError, InputError
from integrations.inventory.versions import VersionScheme, base_ecosystem, normalize_name

__all__ = [
    "BUNDLED_DIR",
    "Advisory",
    "AffectedPackage",
    "OsvRange",
    "Verdict",
    "find_advisory",
    "iter_advisory_files",
    "known_bad_release",
    "load_advisories",
    "load_advisory",
    "resolve_advisory",
]

BUNDLED_DIR = Path(__file__).parent / "advisories"
_SCHEMA_PATH = Path(__file__).parent / "osv-schema.json"
_KNOWN_BAD_COMMITS = BUNDLED_DIR / "known-bad-commits.json"

Status = Literal["affected", "open-ended", "unknown", "not-affected"]


@functools.lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    schema = json.loads(_SCHEMA_PATH.read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


@dataclass(frozen=True)
class OsvRange:
    type: str
    events: tuple[tuple[str, str], ...]
    repo: str | None = None

    @property
    def bounded(self) -> bool:
        return any(kind in ("fixed", "last_affected", "limit") for kind, _ in self.events)

    @property
    def open_ended(self) -> bool:
        """``introduced: "0"`` and nothing closing it: every version ever published."""
        return not self.bounded and any(k == "introduced" and v == "0" for k, v in self.events)


@dataclass(frozen=True)
class Verdict:
    """Outcome of evaluating one version against one affected package."""

    status: Status
    reason: str
    fixed: str | None = None


@dataclass(frozen=True)
class AffectedPackage:
    ecosystem: str
    name: str
    purl: str | None
    versions: tuple[str, ...]
    ranges: tuple[OsvRange, ...]
    known_bad_commits: frozenset[str] = frozenset()

    @property
    def key(self) -> tuple[str, str]:
        return base_ecosystem(self.ecosystem), normalize_name(self.ecosystem, self.name)

    @property
    def open_ended(self) -> bool:
        return any(r.open_ended for r in self.ranges)

    def candidate_bad_versions(self) -> list[str]:
        """Concrete versions known to be bad: listed versions plus range endpoints that are
        themselves affected (``introduced`` other than "0", ``last_affected``)."""
        out = list(self.versions)
        for r in self.ranges:
            if r.type == "GIT":
                continue
            for kind, value in r.events:
                if (kind == "introduced" and value != "0") or kind == "last_affected":
                    out.append(value)
        return list(dict.fromkeys(out))

    def fixed_versions(self) -> list[str]:
        return [v for r in self.ranges if r.type != "GIT" for k, v in r.events if k == "fixed"]

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, version: str, scheme: VersionScheme | None) -> Verdict:
        """OSV evaluation of one released version (not a commit)."""
        if version in self.versions:
            return Verdict(
                "affected",
                f"{version} is listed in the advisory's versions",
                self._fixed_for(version, scheme),
            )
        if scheme is None:
            if self.ranges or self.versions:
                return Verdict("unknown", f"no version library for {self.ecosystem}: compare by hand")
            return Verdict("open-ended", "the advisory lists no versions or ranges")
        try:
            vkey = scheme.key(version)
        except ValueError:
            return Verdict("unknown", f"version {version!r} is not a valid {self.ecosystem} version")
        for listed in self.versions:
            try:
                if scheme.key(listed) == vkey:
                    return Verdict("affected", f"{version} is listed in the advisory's versions (as {listed})")
            except ValueError:
                continue
        results: list[Verdict] = []
        for r in self.ranges:
            if r.type == "GIT":
                continue
            results.append(_eval_range(r, version, vkey, scheme))
        for status in ("affected", "open-ended", "unknown"):
            for v in results:
                if v.status == status:
                    return v
        if not self.versions and not any(r.type != "GIT" for r in self.ranges):
            if self.ranges:
                return Verdict("unknown", "the advisory has only GIT ranges: needs repository history")
            return Verdict(
                "open-ended",
                "the advisory lists no versions or ranges: all versions — needs analyst confirmation",
            )
        return Verdict("not-affected", f"{version} is outside every range and not listed")

    def evaluate_commit(self, sha: str) -> Verdict:
        """A commit pin: known-bad commits and GIT range endpoints; anything else needs history."""
        s = sha.lower()
        if s in self.known_bad_commits:
            return Verdict("affected", f"commit {sha[:12]} is a known-bad commit for {self.name}")
        git = [r for r in self.ranges if r.type == "GIT"]
        for r in git:
            for kind, value in r.events:
                if value.lower() == s and kind in ("introduced", "last_affected"):
                    return Verdict("affected", f"commit {sha[:12]} is the {kind} commit of a GIT range")
        if git:
            return Verdict("unknown", "GIT ranges can only be decided with the repository's history")
        return Verdict("not-affected", f"commit {sha[:12]} is not a known-bad commit")

    def _fixed_for(self, version: str, scheme: VersionScheme | None) -> str | None:
        if scheme is None:
            return None
        try:
            vkey = scheme.key(version)
        except ValueError:
            return None
        for r in self.ranges:
            if r.type == "GIT":
                continue
            v = _eval_range(r, version, vkey, scheme)
            if v.status == "affected" and v.fixed:
                return v.fixed
        return None


def _eval_range(r: OsvRange, version: str, vkey: Any, scheme: VersionScheme) -> Verdict:
    """The OSV spec's algorithm: walk events sorted by version; introduced opens, fixed closes
    (exclusive), last_affected closes (inclusive); a limit caps the whole range."""
    events: list[tuple[Any, int, str, str]] = []
    limits: list[Any] = []
    for kind, value in r.events:
        if kind == "introduced" and value == "0":
            events.append((None, 0, kind, value))
            continue
        try:
            k = scheme.key(value)
        except ValueError:
            return Verdict("unknown", f"range event {kind}={value!r} is not a valid version")
        if kind == "limit":
            limits.append(k)
        else:
            events.append((k, 1, kind, value))
    events.sort(key=functools.cmp_to_key(_event_cmp))
    affected = False
    opened_by_zero = False
    fixed: str | None = None
    for idx, (k, _, kind, _value) in enumerate(events):
        if kind == "introduced" and (k is None or vkey >= k):
            affected = True
            opened_by_zero = k is None
            fixed = _next_fixed(events, idx)
        elif (kind == "fixed" and vkey >= k) or (kind == "last_affected" and vkey > k):
            affected = False
    if affected and limits and all(vkey >= lim for lim in limits):
        affected = False
    if not affected:
        return Verdict("not-affected", f"{version} outside range")
    closed_later = any(kind in ("fixed", "last_affected") and vkey <= k for k, _, kind, _ in events if k is not None)
    if opened_by_zero and not closed_later and not limits:
        return Verdict(
            "open-ended",
            f'range {{introduced: "0"}} has no upper bound: all versions — needs analyst confirmation ({r.type})',
        )
    bounds = ", ".join(f"{kind} {value}" for kind, value in r.events)
    return Verdict("affected", f"{version} is inside {r.type} range [{bounds}]", fixed)


def _event_cmp(a: tuple[Any, int, str, str], b: tuple[Any, int, str, str]) -> int:
    if a[0] is None or b[0] is None:
        return (a[0] is not None) - (b[0] is not None)
    return (a[0] > b[0]) - (a[0] < b[0])


def _next_fixed(events: list[tuple[Any, int, str, str]], idx: int) -> str | None:
    for _, _, kind, value in events[idx + 1 :]:
        if kind == "fixed":
            return value
        if kind in ("introduced", "last_affected"):
            return None
    return None


@dataclass(frozen=True)
class Advisory:
    id: str
    summary: str
    details: str
    aliases: tuple[str, ...]
    published: datetime | None
    modified: datetime | None
    withdrawn: datetime | None
    affected: tuple[AffectedPackage, ...]
    source: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.id, *self.aliases)


def _known_bad_commits() -> dict[str, dict[str, list[str]]]:
    if not _KNOWN_BAD_COMMITS.is_file():
        return {}
    data = json.loads(_KNOWN_BAD_COMMITS.read_text(encoding="utf-8"))
    return {k: v for k, v in data.get("advisories", {}).items()}


def parse_advisory(data: dict[str, Any], source: str | None = None, *, validate: bool = True) -> Advisory:
    """Build an :class:`Advisory` from an OSV JSON object (validated against the schema)."""
    if validate:
        errors = sorted(_validator().iter_errors(data), key=lambda e: list(e.absolute_path))
        if errors:
            where = source or data.get("id", "<record>")
            # the schema keyword that failed, never e.message: it quotes the record's values
            msgs = "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: fails {e.validator!r}"
                             for e in errors[:5])
            raise InputError(f"{where}: not a valid OSV record: {msgs}")
    aliases = tuple(data.get("aliases") or ())
    bad_commits = _known_bad_commits()
    affected: list[AffectedPackage] = []
    for entry in data.get("affected") or ():
        pkg = entry.get("package") or {}
        eco, name = pkg.get("ecosystem"), pkg.get("name")
        if not eco or not name:
            continue
        shas: set[str] = set()
        for adv_id in (data.get("id", ""), *aliases):
            for pkg_name, commits in bad_commits.get(adv_id, {}).items():
                if normalize_name(eco, pkg_name) == normalize_name(eco, name):
                    shas.update(c.lower() for c in commits)
        ranges = tuple(
            OsvRange(
                type=r.get("type", "ECOSYSTEM"),
                repo=r.get("repo"),
                events=tuple((k, str(v)) for ev in r.get("events", ()) for k, v in ev.items()),
            )
            for r in entry.get("ranges") or ()
        )
        affected.append(
            AffectedPackage(
                ecosystem=eco,
                name=name,
                purl=pkg.get("purl"),
                versions=tuple(str(v) for v in entry.get("versions") or ()),
                ranges=ranges,
                known_bad_commits=frozenset(shas),
            )
        )
    return Advisory(
        id=data["id"],
        summary=data.get("summary") or (data.get("details") or "")[:120],
        details=data.get("details") or "",
        aliases=aliases,
        published=_parse_time(data.get("published")),
        modified=_parse_time(data.get("modified")),
        withdrawn=_parse_time(data.get("withdrawn")),
        affected=tuple(affected),
        source=source,
        raw=data,
    )


def load_advisory(path: str | Path, *, validate: bool = True) -> Advisory:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"advisory file not found: {p}") from None
    except IsADirectoryError:
        raise InputError(f"advisory {p}: is a directory, not an OSV JSON file") from None
    except OSError as exc:
        raise InputError(f"advisory {p}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InputError(f"advisory {p}: not UTF-8 text (a binary file?)") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"{p}: an OSV record is a JSON object")
    return parse_advisory(data, str(p), validate=validate)


def iter_advisory_files(directory: str | Path) -> Iterator[Path]:
    """Every ``*.json`` under ``directory`` (OpenSSF malicious-packages layout or flat)."""
    root = Path(directory)
    for p in sorted(root.rglob("*.json")):
        if p.name != _KNOWN_BAD_COMMITS.name and p.is_file():
            yield p


def load_advisories(directory: str | Path, *, validate: bool = True) -> list[Advisory]:
    return [load_advisory(p, validate=validate) for p in iter_advisory_files(directory)]


def _search_path(extra: Iterable[str | Path | None]) -> list[Path]:
    dirs = [Path(d) for d in extra if d]
    dirs.append(BUNDLED_DIR)
    return list(dict.fromkeys(dirs))


_ALIAS_SCAN_LIMIT = 20000


# OSV ids: a prefix, a dash, then letters, digits and . _ : - (GHSA-…, MAL-2026-2307, CVE-…, PYSEC-…).
# Never a glob or a path: the id is matched literally (``glob.escape``) and may not leave the directory.
_ADVISORY_ID = re.compile(r"[A-Za-z][A-Za-z0-9]*-[A-Za-z0-9._:-]{1,120}")


def find_advisory(advisory_id: str, dirs: Iterable[str | Path | None] = ()) -> Path:
    """The file of an OSV id: ``<ID>.json`` (OpenSSF layout) or ``<ID>.<anything>.json``
    anywhere under each directory in turn; then, for directories of at most 20,000 files,
    a record whose aliases name the id."""
    wanted = advisory_id.strip()
    if not _ADVISORY_ID.fullmatch(wanted):
        raise InputError(f"not an advisory id: {wanted[:80]!r} (expected an OSV id such as MAL-2026-2307 or "
                         "GHSA-xxxx-xxxx-xxxx, or the path of an OSV record)")
    search = _search_path(dirs)
    for d in search:
        if not d.is_dir():
            continue
        for p in d.rglob(f"{glob.escape(wanted)}*.json"):
            if p.name == f"{wanted}.json" or p.name.startswith(f"{wanted}."):
                return p
    for d in search:
        if not d.is_dir():
            continue
        files = list(iter_advisory_files(d))
        if len(files) > _ALIAS_SCAN_LIMIT:
            continue
        for p in files:
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(data, dict) and wanted in (data.get("aliases") or ()):
                return p
    shown = ", ".join(str(d) for d in search)
    raise InputError(
        f"advisory {wanted!r} not found in {shown} (give a path to an OSV JSON file, or set STANCH_ADVISORIES_DIR)"
    )


def resolve_advisory(ref: str, dirs: Iterable[str | Path | None] = ()) -> Advisory:
    """``ref`` is a path to an OSV JSON file, or an id looked up in ``dirs`` then the bundle."""
    p = Path(ref)
    if ref.endswith(".json") or p.is_file():
        if not p.is_file():
            raise InputError(f"advisory file not found: {ref}")
        return load_advisory(p)
    if not ref.strip():
        raise InputError("advisory: empty reference")
    return load_advisory(find_advisory(ref, dirs))


@functools.lru_cache(maxsize=4096)
def _package_advisories(eco: str, name: str, dirs: tuple[Path, ...]) -> tuple[Advisory, ...]:
    out: list[Advisory] = []
    for d in dirs:
        for sub in (d / "osv" / "malicious", d / "osv" / "github-reviewed", d / "malicious", d):
            folder = sub / eco / name
            if not folder.is_dir():
                continue
            for p in sorted(folder.glob("*.json")):
                try:
                    out.append(load_advisory(p, validate=False))
                except InputError:
                    continue
    return tuple(out)


def known_bad_release(
    ecosystem: str, name: str, version: str | None, scheme: VersionScheme | None, dirs: Iterable[str | Path | None] = ()
) -> str | None:
    """The id of an advisory (from ``dirs`` then the bundle) that lists ``name@version`` as
    affected, or None. Only the package's own folder is read (OpenSSF / advisory-database layout
    ``osv/<malicious|github-reviewed>/<ecosystem>/<name>/*.json``), so a full database is cheap."""
    if not version:
        return None
    for adv in _package_advisories(ecosystem, name, tuple(_search_path(dirs))):
        for ap in adv.affected:
            if (
                ap.key == (base_ecosystem(ecosystem), normalize_name(ecosystem, name))
                and ap.evaluate(version, scheme).status == "affected"
            ):
                return adv.id
    return None


def check_advisory_dirs(dirs: Iterable[str | Path | None]) -> None:
    """Fail early on a configured advisories directory that does not exist."""
    for d in dirs:
        if d and not Path(d).is_dir():
            raise ConfigurationError(f"advisories directory does not exist: {d}")
