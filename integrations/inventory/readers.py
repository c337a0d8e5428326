"""Inventory readers: what packages a service ships, and the path that pulled each one in.

Owns: parsing npm ``package-lock.json`` (v1 nested ``dependencies``; v2/v3 ``packages`` with
``node_modules/…`` keys, resolved with Node's lookup rule), ``package.json`` manifests, pip
requirements (hashes, ``# via`` comments), ``poetry.lock`` / ``uv.lock`` (``tomllib``),
``pnpm-lock.yaml`` v6/v9 and yarn berry ``yarn.lock`` (both YAML), CycloneDX JSON 1.2-1.6
(purls via ``packageurl-python``, the ``dependencies`` graph), SPDX 2.2/2.3 JSON (purl external
refs, relationships) and GitHub Actions workflows (``uses:`` pins with their ``# vX`` comments).

Every reader builds a :class:`Source`: a name index (cheap, built eagerly) and a dependency graph
that is only walked when a package matched, so scanning a large fleet costs little more than
parsing the files. Readers never guess versions: an entry without one is reported with
``version=None``.

Must not touch: advisories, result models, the network (never run ``npm install``), ``flows``,
``prefect``.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from packageurl import PackageURL
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from integrations.errors import ConfigurationError
from integrations.inventory.versions import gha_tag_version, is_commit_sha, normalize_name

__all__ = [
    "Found",
    "PathStep",
    "Source",
    "detect_kind",
    "read_manifest_specs",
    "read_source",
    "read_text_file",
]

class UnsupportedFormat(ValueError):
    """A reader recognised the file and refuses it; the message is ours (no file content)."""


Pin = Literal["exact", "floating", "locked", "tag", "sha", "branch", "unknown"]

PURL_ECOSYSTEMS: dict[str, str] = {
    "npm": "npm",
    "pypi": "PyPI",
    "maven": "Maven",
    "golang": "Go",
    "cargo": "crates.io",
    "githubactions": "GitHub Actions",
    "composer": "Packagist",
    "gem": "RubyGems",
    "nuget": "NuGet",
    "hex": "Hex",
    "pub": "Pub",
    "deb": "Debian",
    "apk": "Alpine",
    "swift": "SwiftURL",
    "conan": "ConanCenter",
    "cran": "CRAN",
    "hackage": "Hackage",
}


@dataclass(frozen=True)
class PathStep:
    """One hop of a dependency path: the package and the spec its parent declared for it."""

    name: str
    version: str | None
    spec: str | None = None

    def label(self) -> str:
        return f"{self.name} {self.version}" if self.version else self.name


@dataclass(frozen=True)
class Found:
    """One resolved occurrence of a package in a source."""

    name: str
    version: str | None
    ecosystem: str
    source: str
    node: str
    commit: str | None = None
    ref: str | None = None
    pin_hint: Pin | None = None
    note: str | None = None


@dataclass
class Source:
    """A parsed inventory file. ``find`` is a dict lookup; ``path_to`` walks the graph lazily."""

    path: str
    kind: str
    root_name: str
    nodes: dict[str, tuple[str, str | None, str]] = field(default_factory=dict)  # node -> (name, version, eco)
    index: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (eco, norm name) -> nodes
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)  # node -> commit/ref/pin/note
    edges: Callable[[str], Iterable[tuple[str, str | None]]] | None = None  # node -> (child, spec)
    roots: list[tuple[str, str | None]] = field(default_factory=list)  # (node, spec) direct deps
    lazy_graph: (
        Callable[[], tuple[Callable[[str], Iterable[tuple[str, str | None]]], list[tuple[str, str | None]]]] | None
    ) = None
    _parents: dict[str, tuple[str | None, str | None]] | None = None
    warnings: list[str] = field(default_factory=list)

    def add(self, node: str, name: str, version: str | None, ecosystem: str, **extra: Any) -> None:
        self.nodes[node] = (name, version, ecosystem)
        self.index.setdefault((ecosystem, normalize_name(ecosystem, name)), []).append(node)
        if extra:
            self.extra[node] = extra

    @property
    def package_count(self) -> int:
        return len(self.nodes)

    def find(self, ecosystem: str, name: str) -> list[Found]:
        out = []
        for node in self.index.get((ecosystem, normalize_name(ecosystem, name)), ()):
            pname, version, eco = self.nodes[node]
            ex = self.extra.get(node, {})
            out.append(
                Found(
                    name=pname,
                    version=version,
                    ecosystem=eco,
                    source=self.path,
                    node=node,
                    commit=ex.get("commit"),
                    ref=ex.get("ref"),
                    pin_hint=ex.get("pin"),
                    note=ex.get("note"),
                )
            )
        return out

    def _bfs(self) -> dict[str, tuple[str | None, str | None]]:
        if self._parents is not None:
            return self._parents
        if self.lazy_graph is not None:
            self.edges, self.roots = self.lazy_graph()
            self.lazy_graph = None
        parents: dict[str, tuple[str | None, str | None]] = {}
        queue: deque[str] = deque()
        roots = list(self.roots)
        if self.edges is not None:
            # a root that is not a package (an SBOM's document or file element): start from
            # its children instead
            roots = [r for r in roots if r[0] in self.nodes] + [
                c for r in roots if r[0] not in self.nodes for c in self.edges(r[0])
            ]
        for node, spec in roots:
            if node in self.nodes and node not in parents:
                parents[node] = (None, spec)
                queue.append(node)
        if self.edges is not None:
            while queue:
                cur = queue.popleft()
                for child, spec in self.edges(cur):
                    if child in self.nodes and child not in parents:
                        parents[child] = (cur, spec)
                        queue.append(child)
        self._parents = parents
        return parents

    def path_to(self, node: str) -> list[PathStep]:
        """Root first: ``[app, axios 1.14.1 (^1.6.0), plain-crypto-js 4.2.1 (^4.2.1)]``.
        A node the graph does not reach is shown hanging off the root with no spec."""
        parents = self._bfs()
        chain: list[PathStep] = []
        cur: str | None = node
        seen: set[str] = set()
        while cur is not None and cur not in seen:
            seen.add(cur)
            name, version, _ = self.nodes[cur]
            parent, spec = parents.get(cur, (None, None))
            chain.append(PathStep(name, version, spec))
            cur = parent
        chain.append(PathStep(self.root_name, None, None))
        chain.reverse()
        return chain


# --------------------------------------------------------------------------- detection


def detect_kind(path: Path, head: str) -> str:
    name = path.name.lower()
    if name.endswith("package-lock.json") or name == "npm-shrinkwrap.json":
        return "npm-lock"
    if name.endswith("package.json"):
        return "package-json"
    if name == "poetry.lock":
        return "poetry-lock"
    if name == "uv.lock":
        return "uv-lock"
    if name.endswith("pnpm-lock.yaml"):
        return "pnpm-lock"
    if name.endswith("yarn.lock"):
        return "yarn-lock"
    if name.endswith((".yml", ".yaml")) and ("jobs:" in head or "runs:" in head):
        return "gha-workflow"
    if name.endswith(".txt") or name.startswith("requirements") or name.endswith(".in"):
        return "pip-requirements"
    if name.endswith(".json"):
        if '"bomFormat"' in head or "CycloneDX" in head:
            return "cyclonedx"
        if '"spdxVersion"' in head:
            return "spdx"
        if '"lockfileVersion"' in head:
            return "npm-lock"
    raise ConfigurationError(f"{path}: cannot tell what kind of inventory file this is")


def read_text_file(path: str | Path) -> str:
    """The UTF-8 text of an inventory file, or a :class:`ConfigurationError` naming the file and
    the problem (missing, a directory, unreadable, binary) — never a bare ``OSError``."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(f"inventory file not found: {p}") from None
    except IsADirectoryError:
        raise ConfigurationError(f"{p}: is a directory, not a file") from None
    except PermissionError:
        raise ConfigurationError(f"{p}: permission denied") from None
    except OSError as exc:
        raise ConfigurationError(f"{p}: cannot read: {exc.strerror or exc}") from None
    if b"\x00" in raw[:8192]:
        raise ConfigurationError(f"{p}: a binary file, not a lockfile, SBOM or workflow")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigurationError(f"{p}: not UTF-8 text (a binary file?)") from None


def read_source(path: str | Path, display: str | None = None, kind: str | None = None) -> Source:
    """Parse one lockfile / SBOM / workflow into a :class:`Source`."""
    p = Path(path)
    text = read_text_file(p)
    shown = display or str(p)
    kind = kind or detect_kind(p, text[:4096])
    reader = _READERS.get(kind)
    if reader is None:
        raise ConfigurationError(f"{p}: no reader for {kind!r}")
    try:
        return reader(text, shown, p)
    except UnsupportedFormat as exc:  # our own wording, no file content
        raise ConfigurationError(f"{p}: cannot read as {kind}: {exc}") from None
    except (ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        from integrations.inventory.model import content_free_problem  # messages would quote the file

        raise ConfigurationError(f"{p}: cannot read as {kind}: {content_free_problem(exc)}") from None


# --------------------------------------------------------------------------- npm


_NPM_DEP_FIELDS = ("dependencies", "optionalDependencies", "peerDependencies")


def read_manifest_specs(path: str | Path) -> dict[str, str]:
    """Direct dependency specs of a ``package.json`` (all dependency fields merged)."""
    p = Path(path)
    try:
        data = json.loads(read_text_file(p))
    except ValueError as exc:
        raise ConfigurationError(f"{p}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"{p}: a package.json is a JSON object")
    out: dict[str, str] = {}
    for fld in ("peerDependencies", "optionalDependencies", "devDependencies", "dependencies"):
        deps = data.get(fld) or {}
        if isinstance(deps, dict):
            out.update({str(k): str(v) for k, v in deps.items()})
    return out


def _npm_parent(loc: str) -> str | None:
    if not loc:
        return None
    i = loc.rfind("/node_modules/")
    return loc[:i] if i >= 0 else ""


def _npm_packages(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    packages: dict[str, dict[str, Any]] | None = data.get("packages")
    if packages is None:
        packages = _npm_v1_to_packages(data.get("dependencies") or {})
    return packages


def _npm_lock(text: str, shown: str, p: Path) -> Source:
    data = json.loads(text)
    root_name = data.get("name") or p.parent.name or "app"
    packages = _npm_packages(data)
    src = Source(path=shown, kind=f"npm-lock-v{data.get('lockfileVersion', 1)}", root_name=root_name)
    nodes, index = src.nodes, src.index
    for key, meta in packages.items():
        if not key or meta.get("link"):
            continue
        cut = key.rfind("node_modules/")
        name = meta.get("name") or (key[cut + 13 :] if cut >= 0 else key)
        nodes[key] = (name, meta.get("version"), "npm")
        index.setdefault(("npm", name), []).append(key)
    # The graph is only needed when a package matched: re-read the file then, so the fleet scan
    # does not keep every parsed lockfile alive.
    src.lazy_graph = lambda: _npm_graph(json.loads(p.read_text(encoding="utf-8")))
    return src


def _npm_graph(
    data: dict[str, Any],
) -> tuple[Callable[[str], Iterable[tuple[str, str | None]]], list[tuple[str, str | None]]]:
    packages = _npm_packages(data)

    def resolve(loc: str, dep: str) -> str | None:
        cur: str | None = loc
        while cur is not None:
            cand = f"{cur}/node_modules/{dep}" if cur else f"node_modules/{dep}"
            meta = packages.get(cand)
            if meta is not None:
                return str(meta["resolved"]) if meta.get("link") and meta.get("resolved") else cand
            cur = _npm_parent(cur)
        return None

    def edges(node: str) -> Iterable[tuple[str, str | None]]:
        meta = packages.get(node) or {}
        for fld in _NPM_DEP_FIELDS:
            for dep, spec in (meta.get(fld) or {}).items():
                child = resolve(node, dep)
                if child is not None:
                    yield child, str(spec)

    root = packages.get("") or {}
    root_specs: dict[str, str | None] = {}
    for fld in ("peerDependencies", "optionalDependencies", "devDependencies", "dependencies"):
        root_specs.update({k: str(v) for k, v in (root.get(fld) or {}).items()})
    if not root_specs and "packages" not in data:
        # v1 has no root entry: direct deps are the top-level ones nobody else requires.
        required = {d for meta in packages.values() for d in (meta.get("dependencies") or {})}
        root_specs = {k[13:]: None for k in packages if k.count("node_modules/") == 1 and k[13:] not in required}
    roots = [(r, spec) for dep, spec in root_specs.items() if (r := resolve("", dep)) is not None]
    # workspaces: their own dependencies hang off the root too
    for key, meta in packages.items():
        if key and "node_modules/" not in key and not meta.get("link"):
            roots.append((key, None))
    return edges, roots


def _npm_v1_to_packages(deps: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, meta in deps.items():
        key = f"{prefix}node_modules/{name}"
        out[key] = {"version": meta.get("version"), "dependencies": meta.get("requires") or {}}
        out.update(_npm_v1_to_packages(meta.get("dependencies") or {}, key + "/"))
    return out


def _package_json(text: str, shown: str, p: Path) -> Source:
    data = json.loads(text)
    src = Source(path=shown, kind="package-json", root_name=data.get("name") or p.parent.name)
    for name, spec in read_manifest_specs(p).items():
        src.add(name, name, None, "npm", spec=spec)
        src.roots.append((name, spec))
    return src


# --------------------------------------------------------------------------- pnpm / yarn berry


def _split_name_version(entry: str) -> tuple[str, str]:
    """``@scope/pkg@1.2.3(peer@1)`` -> (``@scope/pkg``, ``1.2.3``); ``/pkg@1.0.0`` too."""
    e = entry.lstrip("/")
    e = e.split("(", 1)[0]
    at = e.rfind("@")
    if at <= 0:
        return e, ""
    return e[:at], e[at + 1 :]


def _pnpm_lock(text: str, shown: str, p: Path) -> Source:
    data = yaml.safe_load(text) or {}
    src = Source(path=shown, kind=f"pnpm-lock-v{data.get('lockfileVersion')}", root_name=p.parent.name or "app")
    snapshots = data.get("snapshots") or data.get("packages") or {}
    for key in snapshots:
        name, version = _split_name_version(str(key))
        src.add(str(key).lstrip("/"), name, version or None, "npm")

    def node_for(name: str, ver: str) -> str:
        ver = str(ver)
        if ver.startswith("/"):
            return ver.lstrip("/")
        return f"{name}@{ver}"

    def edges(node: str) -> Iterable[tuple[str, str | None]]:
        meta = snapshots.get(node) or snapshots.get("/" + node) or {}
        for fld in ("dependencies", "optionalDependencies"):
            for dep, ver in (meta.get(fld) or {}).items():
                yield node_for(dep, ver), None

    src.edges = edges
    importers = data.get("importers") or {".": data}
    for imp in importers.values():
        for fld in ("dependencies", "devDependencies", "optionalDependencies"):
            for dep, meta in (imp.get(fld) or {}).items():
                if isinstance(meta, dict):
                    spec, ver = meta.get("specifier"), str(meta.get("version", ""))
                else:
                    ver = str(meta)
                    spec = (imp.get("specifiers") or {}).get(dep)
                src.roots.append((node_for(dep, ver), spec))
    return src


def _yarn_lock(text: str, shown: str, p: Path) -> Source:
    if "__metadata:" not in text:
        raise UnsupportedFormat("yarn v1 (classic) lockfiles are not supported; only yarn berry (v2+, YAML)")
    data = yaml.safe_load(text) or {}
    src = Source(path=shown, kind="yarn-berry-lock", root_name=p.parent.name or "app")
    by_descriptor: dict[str, str] = {}
    workspace: list[str] = []
    for key, meta in data.items():
        if key == "__metadata" or not isinstance(meta, dict):
            continue
        resolution = str(meta.get("resolution", key))
        name, _ = _split_name_version(resolution)
        version = str(meta.get("version")) if meta.get("version") is not None else None
        if "@workspace:" in resolution:
            workspace.append(resolution)
        src.add(resolution, name, version, "npm")
        for desc in str(key).split(","):
            by_descriptor[desc.strip()] = resolution

    def lookup(dep: str, spec: str) -> str | None:
        s = str(spec)
        return by_descriptor.get(f"{dep}@{s}") or by_descriptor.get(f"{dep}@npm:{s}")

    def edges(node: str) -> Iterable[tuple[str, str | None]]:
        for _key, meta in data.items():
            if isinstance(meta, dict) and meta.get("resolution") == node:
                for dep, spec in (meta.get("dependencies") or {}).items():
                    child = lookup(dep, spec)
                    if child:
                        yield child, str(spec)
                break

    src.edges = edges
    src.roots = [(w, None) for w in workspace]
    return src


# --------------------------------------------------------------------------- Python


_VIA_RE = re.compile(r"^#\s+via\s*(.*)$")


def _pip_requirements(text: str, shown: str, p: Path) -> Source:
    src = Source(path=shown, kind="pip-requirements", root_name=p.parent.name or "app")
    # join backslash continuations
    logical: list[tuple[int, str]] = []  # (first physical line number, text)
    buf, first = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not buf:
            first = number
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append((first, buf + line))
        buf = ""
    if buf:
        logical.append((first, buf))
    parents: dict[str, list[str]] = {}
    specs: dict[str, str] = {}
    current: str | None = None
    in_via = False
    for number, line in logical:
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            m = _VIA_RE.match(s)
            if m and current:
                in_via = True
                rest = m.group(1).strip()
                if rest:
                    parents[current].append(rest)
                continue
            if in_via and current and s.startswith("#   "):
                parents[current].append(s[1:].strip())
            continue
        in_via = False
        if s.startswith("-"):
            current = None
            continue
        req_text = re.split(r"\s--?[a-z]", " " + s, maxsplit=1)[0].strip()
        req_text = req_text.split(" #", 1)[0].strip()
        try:
            req = Requirement(req_text)
        except InvalidRequirement:
            # the line number, never the line: warnings reach reports and Slack, file content must not
            src.warnings.append(f"{shown}: skipped unreadable line {number}")
            current = None
            continue
        spec = str(req.specifier)
        items = list(req.specifier)
        version = items[0].version if len(items) == 1 and items[0].operator in ("==", "===") else None
        if version is not None and version.endswith(".*"):
            version = None
        node = str(canonicalize_name(req.name))
        hashed = "--hash" in s
        src.add(node, req.name, version, "PyPI", note="hash-pinned" if hashed else None)
        specs[node] = spec
        parents[node] = []
        current = node

    skipped = sum(1 for w in src.warnings if "skipped unreadable line" in w)
    if skipped and not src.nodes:
        src.warnings.append(f"{shown}: every requirement line was skipped ({skipped}): nothing in this file was scoped")

    def is_root_ref(parent: str) -> bool:
        return parent.startswith(("-r ", "-c ", "-r", "-c")) or parent.endswith((".in", ".txt", ".toml"))

    children: dict[str, list[str]] = {}
    for node, ps in parents.items():
        names = [canonicalize_name(x.split()[0]) for x in ps if not is_root_ref(x)]
        if not names or len(names) < len(ps):
            src.roots.append((node, specs.get(node) or None))
        for par in names:
            children.setdefault(par, []).append(node)
    src.edges = lambda n: ((c, specs.get(c) or None) for c in children.get(n, ()))
    return src


def _toml_lock(text: str, shown: str, p: Path, kind: str) -> Source:
    data = tomllib.loads(text)
    pkgs = data.get("package") or []
    src = Source(path=shown, kind=kind, root_name=p.parent.name or "app")
    deps: dict[str, list[tuple[str, str | None]]] = {}
    depended: set[str] = set()
    root_nodes: list[tuple[str, str | None]] = []
    for pkg in pkgs:
        node = str(canonicalize_name(pkg["name"]))
        source = pkg.get("source") or {}
        is_root = (
            kind == "uv-lock"
            and any(k in source for k in ("editable", "virtual"))
            and source.get("editable", source.get("virtual")) in (".", "")
        )
        out: list[tuple[str, str | None]] = []
        raw_deps = pkg.get("dependencies") or {}
        if isinstance(raw_deps, dict):  # poetry: name = spec | {version = ...}
            for dep, spec in raw_deps.items():
                sp = spec.get("version") if isinstance(spec, dict) else spec
                out.append((canonicalize_name(dep), str(sp) if sp is not None else None))
        else:  # uv: [{name = ...}]
            for d in raw_deps:
                out.append((canonicalize_name(d["name"]), None))
        for extra in (pkg.get("optional-dependencies") or {}).values():
            out.extend((canonicalize_name(d["name"]), None) for d in extra)
        for group in (pkg.get("dev-dependencies") or {}).values():
            out.extend((canonicalize_name(d["name"]), None) for d in group)
        if is_root:
            src.root_name = pkg["name"]
            meta = pkg.get("metadata") or {}
            req_specs = {
                str(canonicalize_name(r["name"])): r.get("specifier")
                for r in (meta.get("requires-dist") or [])
                + [x for g in (meta.get("requires-dev") or {}).values() for x in g]
            }
            root_nodes = [(d, req_specs.get(d)) for d, _ in out]
            continue
        src.add(node, pkg["name"], str(pkg.get("version")) if pkg.get("version") is not None else None, "PyPI")
        deps[node] = out
        depended.update(d for d, _ in out)
    src.edges = lambda n: deps.get(n, ())
    src.roots = root_nodes or [(n, None) for n in deps if n not in depended]
    return src


# --------------------------------------------------------------------------- SBOMs


def purl_identity(purl: str) -> tuple[str, str, str | None] | None:
    """``pkg:npm/%40scope/name@1.0.0#sub`` -> (``npm``, ``@scope/name``, ``1.0.0``)."""
    try:
        pu = PackageURL.from_string(purl)
    except ValueError:
        return None
    eco = PURL_ECOSYSTEMS.get(pu.type)
    if eco is None:
        return None
    ns = pu.namespace
    if eco == "Maven":
        name = f"{ns}:{pu.name}" if ns else pu.name
    elif eco == "Debian" or eco == "Alpine":
        name = pu.name
    else:
        name = f"{ns}/{pu.name}" if ns else pu.name
    return eco, name, pu.version


def _cyclonedx(text: str, shown: str, p: Path) -> Source:
    data = json.loads(text)
    meta_comp = (data.get("metadata") or {}).get("component") or {}
    src = Source(
        path=shown,
        kind=f"cyclonedx-{data.get('specVersion', '?')}",
        root_name=meta_comp.get("name") or p.stem,
    )
    skipped = 0

    def walk(components: Iterable[dict[str, Any]]) -> None:
        nonlocal skipped
        for comp in components:
            ident = purl_identity(comp["purl"]) if comp.get("purl") else None
            ref = comp.get("bom-ref") or comp.get("purl") or f"{comp.get('name')}@{comp.get('version')}"
            if ident is None:
                skipped += 1
            else:
                eco, name, version = ident
                src.add(ref, name, version or comp.get("version"), eco)
            walk(comp.get("components") or ())

    walk(data.get("components") or ())
    if skipped:
        src.warnings.append(f"{shown}: {skipped} component(s) without a usable purl were not matched")
    graph = {d["ref"]: list(d.get("dependsOn") or ()) for d in data.get("dependencies") or () if "ref" in d}
    src.edges = lambda n: ((c, None) for c in graph.get(n, ()))
    root_ref = meta_comp.get("bom-ref")
    if root_ref and root_ref in graph:
        src.roots = [(c, None) for c in graph[root_ref]]
    else:
        depended = {c for cs in graph.values() for c in cs}
        src.roots = [(n, None) for n in src.nodes if n not in depended]
    return src


_SPDX_FORWARD = {"DEPENDS_ON", "CONTAINS", "DYNAMIC_LINK", "STATIC_LINK", "HAS_PREREQUISITE", "DESCRIBES"}
_SPDX_REVERSE = {
    "DEPENDENCY_OF",
    "CONTAINED_BY",
    "BUILD_DEPENDENCY_OF",
    "DEV_DEPENDENCY_OF",
    "OPTIONAL_DEPENDENCY_OF",
    "PROVIDED_DEPENDENCY_OF",
    "TEST_DEPENDENCY_OF",
    "RUNTIME_DEPENDENCY_OF",
    "PREREQUISITE_FOR",
    "DESCRIBED_BY",
}


def _spdx(text: str, shown: str, p: Path) -> Source:
    data = json.loads(text)
    src = Source(path=shown, kind=f"spdx-{data.get('spdxVersion', '?')}", root_name=data.get("name") or p.stem)
    for pkg in data.get("packages") or ():
        for ref in pkg.get("externalRefs") or ():
            if ref.get("referenceType") == "purl":
                ident = purl_identity(ref.get("referenceLocator", ""))
                if ident:
                    eco, name, version = ident
                    src.add(pkg["SPDXID"], name, version or pkg.get("versionInfo"), eco)
                    break
    graph: dict[str, list[str]] = {}
    for rel in data.get("relationships") or ():
        a, b, t = rel.get("spdxElementId"), rel.get("relatedSpdxElement"), rel.get("relationshipType")
        if not a or not b:
            continue
        if t in _SPDX_FORWARD:
            graph.setdefault(a, []).append(b)
        elif t in _SPDX_REVERSE:
            graph.setdefault(b, []).append(a)
    described = list(data.get("documentDescribes") or ()) + graph.get("SPDXRef-DOCUMENT", [])
    # the described elements are roots themselves (they may be packages with purls)
    src.edges = lambda n: ((c, None) for c in graph.get(n, ()))
    src.roots = [(d, None) for d in described]
    unmatched = sum(1 for pkg in data.get("packages") or () if pkg.get("SPDXID") not in src.nodes)
    if unmatched:
        src.warnings.append(f"{shown}: {unmatched} package(s) without a usable purl were not matched")
    if not src.roots:
        depended = {c for cs in graph.values() for c in cs}
        src.roots = [(n, None) for n in src.nodes if n not in depended]
    return src


# --------------------------------------------------------------------------- GitHub Actions


_USES_LINE = re.compile(r"""^\s*(?:-\s*)?uses:\s*['"]?([^'"\s#]+)['"]?\s*(?:#\s*(.*))?$""")


def _collect_uses(node: Any, out: list[str]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "uses" and isinstance(v, str):
                out.append(v)
            else:
                _collect_uses(v, out)
    elif isinstance(node, list):
        for v in node:
            _collect_uses(v, out)


def _gha_workflow(text: str, shown: str, p: Path) -> Source:
    data = yaml.safe_load(text) or {}
    uses: list[str] = []
    _collect_uses(data.get("jobs") or data.get("runs") or data, uses)
    comments: dict[str, str] = {}
    for line in text.splitlines():
        m = _USES_LINE.match(line)
        if m and m.group(2):
            comments.setdefault(m.group(1), m.group(2).strip())
    src = Source(path=shown, kind="gha-workflow", root_name=str(data.get("name") or p.stem))
    for i, u in enumerate(uses):
        if u.startswith(("./", "docker://")) or "@" not in u:
            continue
        action, ref = u.rsplit("@", 1)
        comment = comments.get(u)
        node = f"{i}:{u}"
        if is_commit_sha(ref):
            version = None
            if comment:
                m = re.match(r"^(?:tag=)?(v?\d+(?:\.\d+){0,2}\S*)", comment)
                version = m.group(1) if m else None
            src.add(
                node,
                action,
                version,
                "GitHub Actions",
                commit=ref.lower(),
                ref=ref,
                pin="sha",
                note=f"version {version} from the '# {comment}' comment" if version else None,
            )
        else:
            tv = gha_tag_version(ref)
            if tv is None:
                src.add(node, action, None, "GitHub Actions", ref=ref, pin="branch")
            else:
                src.add(node, action, ref, "GitHub Actions", ref=ref, pin="floating" if tv[1] else "tag")
        src.roots.append((node, ref))
    return src


_READERS: dict[str, Callable[[str, str, Path], Source]] = {
    "npm-lock": _npm_lock,
    "package-json": _package_json,
    "pnpm-lock": _pnpm_lock,
    "yarn-lock": _yarn_lock,
    "pip-requirements": _pip_requirements,
    "poetry-lock": lambda t, s, p: _toml_lock(t, s, p, "poetry-lock"),
    "uv-lock": lambda t, s, p: _toml_lock(t, s, p, "uv-lock"),
    "cyclonedx": _cyclonedx,
    "spdx": _spdx,
    "gha-workflow": _gha_workflow,
}
