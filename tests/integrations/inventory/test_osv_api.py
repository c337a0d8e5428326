"""Advisories that are not bundled are fetched from the OSV API (a local stand-in serving a
recorded real record), validated, cached, and then work offline; errors say why, never echo."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_standin import JSONHandler, serve

from integrations.base import ActionContext
from integrations.errors import InputError, PermanentActionError
from integrations.inventory import MATCH_ADVISORY
from integrations.inventory.osv_api import advisory_dirs, cache_dir
from integrations.settings import StanchSettings

RECORDED = Path(__file__).resolve().parents[2] / "fixtures" / "inventory" / "osv-api"


class _OSV(JSONHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        _OSV.hits.append(self.path)
        name = self.path.removeprefix("/v1/vulns/")
        if name == "BROKEN-1":
            body, status = b'{"id": "BROKEN-1", "affected": "not a list"}', 200
        elif (RECORDED / f"{name}.json").is_file():
            body, status = (RECORDED / f"{name}.json").read_bytes(), 200
        else:
            body, status = b'{"code":5,"message":"Bug not found."}', 404  # what api.osv.dev answers
        self.send_json(body, status)


@pytest.fixture(scope="module")
def osv_url() -> Iterator[str]:
    with serve(_OSV) as url:
        yield url


def test_fetch_cache_then_offline(osv_url: str, tmp_path: Path, inv_fleet: Path) -> None:
    _OSV.hits.clear()
    online = StanchSettings(home=tmp_path, osv_api_url=osv_url, inventory=inv_fleet)
    ctx = ActionContext(incident_id="INC-1", step_id="scope", settings=online)
    result = MATCH_ADVISORY.execute(ctx, {"advisory": "MAL-2025-47131"})
    assert result.advisory.id == "MAL-2025-47131" and result.affected == []
    assert _OSV.hits == ["/v1/vulns/MAL-2025-47131"]
    cached = cache_dir(online) / "MAL-2025-47131.json"
    assert json.loads(cached.read_text())["aliases"] == ["GHSA-wv45-cmjw-6456"]
    # offline (fetching off): the cache answers; a bundled id never needs OSV
    offline = StanchSettings(home=tmp_path, osv_api_url="", inventory=inv_fleet)
    again = MATCH_ADVISORY.execute(ActionContext(incident_id="INC-2", step_id="scope", settings=offline),
                                   {"advisory": "MAL-2025-47131"})
    assert again.advisory.id == "MAL-2025-47131"
    advisory_dirs(["MAL-2026-2307"], [], online)
    assert _OSV.hits == ["/v1/vulns/MAL-2025-47131"]


def test_errors_say_why(osv_url: str, tmp_path: Path) -> None:
    online = StanchSettings(home=tmp_path, osv_api_url=osv_url)
    with pytest.raises(InputError, match=r"OSV .* has no such record"):
        advisory_dirs(["MAL-1999-1"], [], online)
    with pytest.raises(InputError, match="BROKEN-1"):
        advisory_dirs(["BROKEN-1"], [], online)
    assert not (cache_dir(online) / "BROKEN-1.json").exists()  # never cached when invalid
    with pytest.raises(InputError, match="cannot be reached"):
        advisory_dirs(["MAL-1999-2"], [], StanchSettings(home=tmp_path, osv_api_url="http://127.0.0.1:9"))
    with pytest.raises(InputError, match=r"not found.*fetching from OSV is off"):
        advisory_dirs(["MAL-1999-3"], [], StanchSettings(home=tmp_path, osv_api_url=""))
    ctx = ActionContext(incident_id="INC-3", step_id="scope", settings=StanchSettings(home=tmp_path, osv_api_url=""))
    with pytest.raises(PermanentActionError, match="MAL-1999-3"):
        MATCH_ADVISORY.execute(ctx, {"advisory": "MAL-1999-3", "inventory": str(tmp_path / "inv.yaml")})
