"""Inventory readers on the real fixtures and on small lockfiles written here."""

from __future__ import annotations

from pathlib import Path

import pytest

from integrations.errors import ConfigurationError
from integrations.inventory.readers import read_source


def _labels(src, node):  # type: ignore[no-untyped-def]
    return [s.label() for s in src.path_to(node)]


def test_npm_lock_v3_real(real: Path) -> None:
    src = read_source(real / "lockfiles/npm/stx-defi-dashboard.package-lock.json")
    assert src.kind == "npm-lock-v3" and src.package_count == 350
    (f,) = src.find("npm", "plain-crypto-js")
    assert f.version == "4.2.1"
    steps = src.path_to(f.node)
    assert [s.label() for s in steps] == ["stx-defi-dashboard", "axios 1.14.1", "plain-crypto-js 4.2.1"]
    assert [s.spec for s in steps[1:]] == ["^1.6.0", "^4.2.1"]


def test_npm_lock_v1_nested(inv_fleet: Path) -> None:
    src = read_source(inv_fleet.parent / "v1.package-lock.json")
    versions = sorted(f.version for f in src.find("npm", "axios"))  # type: ignore[type-var]
    assert versions == ["0.30.3", "1.14.1"]
    nested = next(f for f in src.find("npm", "axios") if f.version == "1.14.1")
    assert _labels(src, nested.node) == ["reports-worker", "report-kit 3.1.0", "axios 1.14.1"]
    (pc,) = src.find("npm", "plain-crypto-js")
    assert _labels(src, pc.node)[-2:] == ["axios 1.14.1", "plain-crypto-js 4.2.1"]


def test_pip_requirements_with_hashes_and_via(real: Path) -> None:
    src = read_source(real / "lockfiles/pypi/sigstore-python.install.requirements.txt")
    assert src.package_count == 32
    (cffi,) = src.find("PyPI", "CFFI")  # names are PEP 503-normalised
    assert cffi.version == "2.1.0" and cffi.note == "hash-pinned"
    steps = src.path_to(cffi.node)
    assert [s.label() for s in steps][1:] == ["sigstore 4.5.0", "cryptography 50.0.0", "cffi 2.1.0"]
    assert steps[-1].spec == "==2.1.0"


def test_pip_requirements_extras_and_mixed_case(real: Path) -> None:
    src = read_source(real / "lockfiles/pypi/warehouse.requirements.deploy.at-002bc98.txt")
    (tw,) = src.find("PyPI", "twisted")
    assert (tw.name, tw.version) == ("Twisted", "17.5.0")
    assert src.find("PyPI", "zope-interface")[0].name == "zope.interface"


def test_cyclonedx_scoped_purls_and_graph(real: Path) -> None:
    src = read_source(real / "sbom/cyclonedx/juice-shop__via_npm__bare__bom.1.4.json")
    assert src.kind == "cyclonedx-1.4" and src.package_count == 1115
    (f,) = src.find("npm", "@babel/parser")  # pkg:npm/%40babel/parser@7.21.2#packages/babel-parser
    assert f.version == "7.21.2"
    assert _labels(src, f.node)[0] == "juice-shop" and _labels(src, f.node)[-1] == "@babel/parser 7.21.2"
    assert src.find("npm", "axios") == []


def test_cyclonedx_1_2_without_graph_and_composer(real: Path) -> None:
    pm = read_source(real / "sbom/cyclonedx/protonmail-webclient-v4-0912dff__bom.json")
    assert pm.kind == "cyclonedx-1.2" and pm.find("npm", "ua-parser-js")[0].version == "0.7.21"
    lv = read_source(real / "sbom/cyclonedx/laravel-7.12.0__bom.1.4.json")
    assert lv.package_count == 62
    assert all(eco == "Packagist" for _, _, eco in lv.nodes.values())


def test_spdx_purls_and_relationships(real: Path) -> None:
    s = read_source(real / "sbom/spdx/software__example11__spdx2.3__sbom.spdx.json")
    (hyper,) = s.find("crates.io", "hyper")
    assert _labels(s, hyper.node)[-2:] == ["libselinux1-dev 3.1-3", "hyper 0.14"]
    s22 = read_source(real / "sbom/spdx/software__example7__spdx2.2__example7-bin.spdx.json")
    assert s22.kind == "spdx-SPDX-2.2" and s22.package_count == 0 and s22.warnings
    mvn = read_source(real / "sbom/spdx/presentations__OSS-NA-2023__SPDXVersion2.3__03-SBOMwDependency.json")
    assert mvn.package_count == 1


def test_workflow_pins(real: Path) -> None:
    rel = read_source(real / "workflows/sigstore-python.release.yml")
    (co,) = rel.find("GitHub Actions", "actions/checkout")
    assert co.commit == "3d3c42e5aac5ba805825da76410c181273ba90b1" and co.version == "v7.0.1"
    assert co.pin_hint == "sha"
    assert all(not n.split(":", 1)[1].startswith("./") for n in rel.nodes)  # local reusable workflow skipped
    stx = read_source(real / "workflows/stx-defi-dashboard.ci.yml")
    (node,) = stx.find("GitHub Actions", "Actions/Setup-Node")
    assert node.version == "v4" and node.pin_hint == "floating"


def test_poetry_and_uv_locks(tmp_path: Path) -> None:
    poetry = tmp_path / "poetry.lock"
    poetry.write_text(
        '[[package]]\nname = "Requests"\nversion = "2.32.3"\n[package.dependencies]\nurllib3 = ">=1.21.1,<3"\n\n'
        '[[package]]\nname = "urllib3"\nversion = "2.2.2"\n'
    )
    src = read_source(poetry)
    (u,) = src.find("PyPI", "urllib3")
    assert [s.label() for s in src.path_to(u.node)][1:] == ["Requests 2.32.3", "urllib3 2.2.2"]
    uv = tmp_path / "uv.lock"
    uv.write_text(
        'version = 1\n[[package]]\nname = "svc"\nversion = "0.1.0"\nsource = { editable = "." }\n'
        'dependencies = [{ name = "httpx" }]\n[package.metadata]\n'
        'requires-dist = [{ name = "httpx", specifier = ">=0.27" }]\n\n'
        '[[package]]\nname = "httpx"\nversion = "0.27.2"\nsource = { registry = "https://pypi.org/simple" }\n'
        'dependencies = [{ name = "idna" }]\n\n'
        '[[package]]\nname = "idna"\nversion = "3.10"\nsource = { registry = "https://pypi.org/simple" }\n'
    )
    src = read_source(uv)
    (idna,) = src.find("PyPI", "idna")
    steps = src.path_to(idna.node)
    assert [s.label() for s in steps] == ["svc", "httpx 0.27.2", "idna 3.10"]
    assert steps[1].spec == ">=0.27"


def test_pnpm_and_yarn_berry(tmp_path: Path) -> None:
    pnpm = tmp_path / "pnpm-lock.yaml"
    pnpm.write_text(
        "lockfileVersion: '9.0'\nimporters:\n  .:\n    dependencies:\n      axios:\n"
        "        specifier: ^1.6.0\n        version: 1.14.1\npackages:\n  axios@1.14.1: {}\n"
        "  plain-crypto-js@4.2.1: {}\nsnapshots:\n  axios@1.14.1:\n    dependencies:\n"
        "      plain-crypto-js: 4.2.1\n  plain-crypto-js@4.2.1: {}\n"
    )
    src = read_source(pnpm)
    (pc,) = src.find("npm", "plain-crypto-js")
    steps = src.path_to(pc.node)
    assert [s.label() for s in steps][1:] == ["axios 1.14.1", "plain-crypto-js 4.2.1"]
    assert steps[1].spec == "^1.6.0"
    yarn = tmp_path / "yarn.lock"
    yarn.write_text(
        '__metadata:\n  version: 8\n\n"app@workspace:.":\n  version: 0.0.0-use.local\n'
        '  resolution: "app@workspace:."\n  dependencies:\n    axios: "npm:^1.6.0"\n\n'
        '"axios@npm:^1.6.0":\n  version: 1.14.1\n  resolution: "axios@npm:1.14.1"\n'
    )
    src = read_source(yarn)
    (ax,) = src.find("npm", "axios")
    assert ax.version == "1.14.1"
    assert src.path_to(ax.node)[-1].spec == "npm:^1.6.0"


def test_yarn_classic_is_refused_clearly(tmp_path: Path) -> None:
    y = tmp_path / "yarn.lock"
    y.write_text('# yarn lockfile v1\n\naxios@^1.6.0:\n  version "1.14.1"\n')
    with pytest.raises(ConfigurationError, match="yarn v1"):
        read_source(y)
