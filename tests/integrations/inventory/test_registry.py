"""Safe versions checked against registry metadata: a local stand-in serves recorded real responses
(npm's abbreviated document for axios, PyPI's JSON for sigstore — tests/fixtures/inventory/registry);
the derived pin is confirmed, replaced when the registry says it is unusable, and kept as a labelled
guess when the registry cannot be reached."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from http_standin import JSONHandler, serve

from integrations.base import ActionContext
from integrations.inventory import MATCH_ADVISORY
from integrations.inventory.registry import registry_versions
from integrations.settings import StanchSettings

RECORDED = Path(__file__).resolve().parents[2] / "fixtures" / "inventory" / "registry"
WINDOW = {"live_from": "2026-03-31T00:21:00Z", "live_until": "2026-03-31T03:15:00Z"}


class _Registry(JSONHandler):
    deprecate: ClassVar[set[str]] = set()

    def do_GET(self) -> None:
        files = {"/axios": "npm-axios.corgi.json.gz", "/pypi/sigstore/json": "pypi-sigstore.json.gz"}
        name = files.get(self.path)
        if name is None:
            body, status = b'{"error":"Not found"}', 404
        else:
            doc = json.loads(gzip.decompress((RECORDED / name).read_bytes()))
            for v in _Registry.deprecate:  # an edited copy: the recorded document with one version deprecated
                doc["versions"][v]["deprecated"] = "test: pretend this release is deprecated"
            body, status = json.dumps(doc).encode(), 200
        self.send_json(body, status)


@pytest.fixture(scope="module")
def registry_url() -> Iterator[str]:
    with serve(_Registry) as url:
        yield url


def _scope(tmp_path: Path, inv: Path, npm: str) -> dict[str, object]:
    settings = StanchSettings(home=tmp_path, npm_registry_url=npm, pypi_url="")
    ctx = ActionContext(incident_id="INC-1", step_id="scope", settings=settings)
    result = MATCH_ADVISORY.execute(ctx, {"advisory": "MAL-2026-2307", "inventory": str(inv), **WINDOW})
    svc = next(s for s in result.affected if s.name == "stx-defi-dashboard")
    return {"pins": svc.pins, "source": svc.packages[0].safe_version_source, "run": result.safe_versions}


def test_pin_confirmed_replaced_or_labelled(registry_url: str, tmp_path: Path, inv_fleet: Path) -> None:
    confirmed = _scope(tmp_path, inv_fleet, registry_url)
    assert confirmed["pins"] == {"axios": "1.14.0"}
    assert "checked on npm: exists, not deprecated/yanked" in str(confirmed["source"])

    _Registry.deprecate = {"1.14.0"}
    try:
        replaced = _scope(tmp_path, inv_fleet, registry_url)
    finally:
        _Registry.deprecate = set()
    assert replaced["pins"] == {"axios": "1.13.6"}  # the highest clean 1.x release below 1.14.1 in the record
    assert "1.14.0 is deprecated; 1.13.6 is the closest clean release on the 1.x line" in str(replaced["source"])
    assert replaced["run"] == {"axios": {"0.x": "0.30.3", "1.x": "1.13.6"}}

    unreachable = _scope(tmp_path, inv_fleet, "http://127.0.0.1:9")
    assert unreachable["pins"] == {"axios": "1.14.0"}
    assert "registry unreachable: an unverified guess" in str(unreachable["source"])


def test_pypi_yanked_and_unknown_package(registry_url: str, tmp_path: Path) -> None:
    settings = StanchSettings(home=tmp_path, npm_registry_url=registry_url, pypi_url=registry_url)
    sig = registry_versions("PyPI", "sigstore", settings)
    assert sig is not None and "3.0.0" in sig.versions and "3.0.0" not in sig.unusable
    assert sig.unusable.get("0.1.0") == "yanked"
    nothing = registry_versions("npm", "no-such-package-here", settings)
    assert nothing is not None and nothing.versions == set()
    assert registry_versions("crates.io", "serde", settings) is None
