"""The ``inventory.match_advisory`` action: registration, params, search path, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from integrations.base import ActionContext, ActionRegistry, PermanentActionError
from integrations.errors import InputError
from integrations.inventory import MatchResult, register
from integrations.inventory.osv import find_advisory, load_advisories, resolve_advisory
from integrations.settings import StanchSettings


def _ctx(advisories_dir: Path | None = None) -> ActionContext:
    recorded: list[tuple[str, dict]] = []
    ctx = ActionContext(
        incident_id="inc-1",
        step_id="scope",
        settings=StanchSettings(advisories_dir=advisories_dir),
        record=lambda kind, data: recorded.append((kind, data)),
    )
    ctx.recorded = recorded  # type: ignore[attr-defined]
    return ctx


def test_registered_read_only_and_idempotent() -> None:
    reg = ActionRegistry()
    register(reg)
    spec = reg.get("inventory.match_advisory")
    assert spec.mutating is False and spec.idempotent is True and spec.result is MatchResult
    with pytest.raises(ValueError):
        spec.validate_params({"advisory": "x", "inventory": "y", "bogus": 1})


def test_run_returns_the_model_the_runbook_fans_out_on(inv_fleet: Path) -> None:
    reg = ActionRegistry()
    register(reg)
    ctx = _ctx()
    out = reg.get("inventory.match_advisory").execute(
        ctx,
        {
            "advisory": "MAL-2026-2307",
            "inventory": str(inv_fleet),
            "live_from": "2026-03-31T00:21:00Z",
            "live_until": "2026-03-31T03:15:00Z",
        },
    )
    dumped = out.model_dump(mode="json")
    item = next(a for a in dumped["affected"] if a["name"] == "stx-defi-dashboard")
    for key in ("account", "ci_user", "signing_certificate", "signing_secret", "audience", "name", "safe_version"):
        assert item[key]
    assert item["deploy_target"]["bucket"] == "dash-releases"
    assert ctx.recorded[0][0] == "scope"  # type: ignore[attr-defined]
    json.dumps(dumped)  # plain JSON all the way down


def test_bad_reference_is_a_permanent_error(inv_fleet: Path) -> None:
    reg = ActionRegistry()
    register(reg)
    with pytest.raises(PermanentActionError, match="not found"):
        reg.get("inventory.match_advisory").execute(_ctx(), {"advisory": "MAL-0-0", "inventory": str(inv_fleet)})


def test_settings_advisories_dir_is_searched_first(tmp_path: Path, real: Path, inv_fleet: Path) -> None:
    d = tmp_path / "osv" / "malicious" / "npm" / "axios"
    d.mkdir(parents=True)
    data = json.loads((real / "osv" / "MAL-2026-2307.axios.json").read_text())
    data["summary"] = "local copy"
    (d / "MAL-2026-2307.json").write_text(json.dumps(data))
    reg = ActionRegistry()
    register(reg)
    out = reg.get("inventory.match_advisory").execute(
        _ctx(tmp_path), {"advisory": "MAL-2026-2307", "inventory": str(inv_fleet)}
    )
    assert out.advisory.summary == "local copy"


def test_lookup_by_alias_and_directory_listing(tmp_path: Path, real: Path) -> None:
    assert find_advisory("GHSA-fw8c-xr5c-95f9").name == "MAL-2026-2307.json"
    shutil.copytree(real / "osv", tmp_path / "osv")
    assert {a.id for a in load_advisories(tmp_path)} >= {"MAL-2026-2307", "MAL-2025-47141"}


@pytest.mark.parametrize("ref", ["*", "MAL-*", "GHSA-[a-z]*", "MAL-2026-2307/../x", "**/*", "../*"])
def test_an_advisory_id_is_matched_literally_never_as_a_glob_or_path(ref: str) -> None:
    """A CLI- or Slack-given id reaches ``rglob``: ``*`` would have matched the first bundled record."""
    with pytest.raises(InputError) as info:
        resolve_advisory(ref)
    assert "not an advisory id" in str(info.value) or "no advisory" in str(info.value).lower()
