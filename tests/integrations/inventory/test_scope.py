"""Acceptance tests of ``scope`` on the real fixtures (copies under tests/fixtures/inventory)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from integrations.errors import InputError
from integrations.inventory import MatchResult, render_scope_table, scope, scope_many

AXIOS_FROM = datetime(2026, 3, 31, 0, 21, tzinfo=UTC)
AXIOS_UNTIL = datetime(2026, 3, 31, 3, 15, tzinfo=UTC)


def _affected(result: MatchResult, name: str):  # type: ignore[no-untyped-def]
    return next(s for s in result.affected if s.name == name)


def _verdict(result: MatchResult, name: str):  # type: ignore[no-untyped-def]
    return next(s for s in result.services if s.name == name)


def test_stx_dashboard_affected_by_axios_with_path_and_exposure(inv_fleet: Path) -> None:
    r = scope("MAL-2026-2307", inv_fleet, live_from=AXIOS_FROM, live_until=AXIOS_UNTIL)
    svc = _affected(r, "stx-defi-dashboard")
    (pkg,) = svc.packages
    assert (pkg.name, pkg.version, pkg.ecosystem) == ("axios", "1.14.1", "npm")
    assert pkg.path == ["stx-defi-dashboard", "axios 1.14.1"]
    assert pkg.manifest_spec == "^1.6.0" and pkg.pin == "floating"
    assert svc.exposure == "exposed"  # install at 01:00 UTC, inside 00:21-03:15
    assert svc.installs_in_window == [datetime(2026, 3, 31, 1, 0, tzinfo=UTC)]
    assert svc.safe_version == "1.14.0"
    assert svc.safe_version_source == "previous-patch (verify on registry)"
    # the fields the runbook fans out on
    assert svc.account == "111111111111" and svc.ci_user == "ci-dashboard"
    assert svc.signing_certificate and svc.signing_secret == "stanch/dashboard/signing"
    assert svc.deploy_target and svc.deploy_target["bucket"] == "dash-releases"
    assert svc.audience == "dashboard-users"
    assert r.advisory.aliases == ["GHSA-fw8c-xr5c-95f9"]
    assert r.window.from_source == "input" and r.window.until_source == "input"


def test_stx_dashboard_affected_by_plain_crypto_js_via_axios(inv_fleet: Path) -> None:
    r = scope("MAL-2026-2306", inv_fleet)
    (pkg,) = _affected(r, "stx-defi-dashboard").packages
    assert pkg.path == ["stx-defi-dashboard", "axios 1.14.1", "plain-crypto-js 4.2.1"]
    assert pkg.manifest_spec == "^1.6.0" and pkg.declared_spec == "^4.2.1"
    # window end defaults to the advisory's publication time; the start to a week before the
    # record's earliest timestamp (OSV does not carry the bad release's own publication time)
    assert r.window.until_source == "advisory.published"
    assert r.window.live_until == datetime(2026, 3, 31, 2, 7, 58, tzinfo=UTC)
    assert r.window.from_source == "advisory.lookback"
    assert r.window.live_from == datetime(2026, 3, 24, 2, 7, 58, tzinfo=UTC)
    # injected by the compromised axios 1.14.1: no version of it is safe, the answer is "remove"
    assert pkg.action == "remove" and pkg.safe_version is None
    assert "axios 1.14.1 (MAL-2026-2307)" in pkg.safe_version_source
    svc = _affected(r, "stx-defi-dashboard")
    assert svc.remove == ["plain-crypto-js"] and svc.pins == {}
    assert r.remove == ["plain-crypto-js"] and r.safe_versions == {}
    (detail,) = r.safe_version_details
    assert (detail.bad_version, detail.action, detail.safe_version) == ("4.2.1", "remove", None)


def test_exact_pin_on_clean_release_is_pinned_clean(inv_fleet: Path) -> None:
    r = scope("MAL-2026-2307", inv_fleet, live_from=AXIOS_FROM, live_until=AXIOS_UNTIL)
    v = _verdict(r, "billing-api")  # "axios": "1.14.0", installed at 01:00 too
    assert v.verdict == "unaffected" and v.exposure == "pinned-clean"
    assert "billing-api" in r.unaffected


def test_lockfile_locked_clean_under_a_caret_range_is_pinned_clean_even_with_installs(inv_fleet: Path) -> None:
    """``npm ci`` installs what the lockfile locks: 1.14.0 under ^1.6.0 is clean, with or without
    an install history inside the window (web-portal's CSV has an install at 01:00)."""
    r = scope("MAL-2026-2307", inv_fleet, live_from=AXIOS_FROM, live_until=AXIOS_UNTIL)
    for name in ("web-portal", "web-portal-quiet"):
        v = _verdict(r, name)
        assert (v.verdict, v.exposure) == ("unaffected", "pinned-clean"), name
        assert "locks clean 1.14.0 under ^1.6.0" in v.reason
    assert not any(c.service.startswith("web-portal") for c in r.needs_confirmation)
    assert {"web-portal", "web-portal-quiet"} <= set(r.unaffected)
    # the case: 1.14.0 locked under ^1.14.0, an `npm ci` from that same lockfile at 01:00
    ci = _verdict(r, "web-portal-ci")
    assert (ci.verdict, ci.exposure) == ("unaffected", "pinned-clean")
    assert "locks clean 1.14.0 under ^1.14.0" in ci.reason


def test_floating_spec_without_lockfile_installed_in_window_is_exposed(inv_fleet: Path) -> None:
    r = scope("MAL-2026-2307", inv_fleet, live_from=AXIOS_FROM, live_until=AXIOS_UNTIL)
    svc = _affected(r, "web-portal-manifest")  # package.json ^1.6.0 only, CSV history has 01:00
    (pkg,) = svc.packages
    assert pkg.verdict == "floating-exposed" and pkg.bad_version == "1.14.1"
    assert svc.exposure == "exposed" and svc.pins == {"axios": "1.14.0"}


def test_floating_spec_with_installs_outside_window_is_not_exposed(inv_fleet: Path) -> None:
    later = datetime(2026, 3, 31, 0, 30, tzinfo=UTC)
    r = scope(
        "MAL-2026-2307",
        inv_fleet,
        live_from=later,
        live_until=datetime(2026, 3, 31, 0, 40, tzinfo=UTC),
    )
    v = _verdict(r, "web-portal-manifest")
    assert v.verdict == "unaffected" and v.exposure == "not-exposed"


def test_install_before_the_bad_release_existed_is_not_exposed_by_default(inv_fleet: Path) -> None:
    """Default window: no unbounded start. web-portal-manifest's install of 2026-03-20 (eleven days
    before the bad axios releases) is outside; its 01:00 install on 03-31 is inside."""
    r = scope("MAL-2026-2307", inv_fleet)
    assert r.window.from_source == "advisory.lookback" and r.window.live_from is not None
    assert r.window.live_from > datetime(2026, 3, 20, 12, tzinfo=UTC)
    assert r.window.note and "--live-from" in r.window.note
    pre = _verdict(r, "pre-release-install")  # ^1.6.0 manifest, one install on 2026-03-20 only
    assert (pre.verdict, pre.exposure) == ("unaffected", "not-exposed")
    assert datetime(2026, 3, 31, 1, 0, tzinfo=UTC) in _affected(r, "web-portal-manifest").installs_in_window


def test_reversed_window_is_refused(inv_fleet: Path) -> None:
    with pytest.raises(InputError, match="reversed: live_from 2026-03-31T03:15:00"):
        scope("MAL-2026-2307", inv_fleet, live_from=AXIOS_UNTIL, live_until=AXIOS_FROM)


def test_safe_version_per_release_line(inv_fleet: Path) -> None:
    r = scope("MAL-2026-2307", inv_fleet, live_from=AXIOS_FROM, live_until=AXIOS_UNTIL)
    legacy = _affected(r, "legacy-admin")
    assert legacy.safe_version == "0.30.3" and legacy.pins == {"axios": "0.30.3"}
    assert _affected(r, "stx-defi-dashboard").pins == {"axios": "1.14.0"}
    assert _affected(r, "reports-worker").pins == {"axios": "1.14.0"}
    details = {d.bad_version: (d.line, d.safe_version) for d in r.safe_version_details}
    assert details == {"0.30.4": ("0.x", "0.30.3"), "1.14.1": ("1.x", "1.14.0")}
    # one per affected major line, never collapsed to the highest
    assert r.safe_versions == {"axios": {"0.x": "0.30.3", "1.x": "1.14.0"}}
    assert r.remove == []
    assert "safe: axios 0.30.3 (0.x), 1.14.0 (1.x)" in _render(r)


def test_fixed_version_wins_when_the_advisory_has_one(inv_fleet: Path) -> None:
    r = scope("GHSA-pjwm-rvh2-c87w", inv_fleet)
    details = {d.bad_version: (d.safe_version, d.source) for d in r.safe_version_details}
    assert details["0.7.29"] == ("0.7.30", "fixed")


def test_sboms_not_affected_by_axios(inv_fleet: Path) -> None:
    r = scope("MAL-2026-2307", inv_fleet, live_from=AXIOS_FROM, live_until=AXIOS_UNTIL)
    names = {s.name for s in r.affected} | {c.service for c in r.needs_confirmation}
    assert "juice-shop" not in names and "protonmail-web" not in names
    assert {"juice-shop", "protonmail-web"} <= set(r.unaffected)


def test_ua_parser_0_7_21_in_protonmail_sbom_not_flagged(inv_fleet: Path) -> None:
    r = scope("GHSA-pjwm-rvh2-c87w", inv_fleet)
    v = _verdict(r, "protonmail-web")
    assert v.verdict == "unaffected"
    assert "protonmail-web" not in {s.name for s in r.affected}
    assert "protonmail-web" not in {c.service for c in r.needs_confirmation}


def test_tinycolor_is_open_ended_not_matched(inv_fleet: Path) -> None:
    r = scope("MAL-2025-47141", inv_fleet)
    assert r.advisory.open_ended == ["npm/@ctrl/tinycolor"]
    assert r.affected == []
    (c,) = r.needs_confirmation
    assert c.service == "design-system" and c.kind == "open-ended"
    assert "all versions — needs analyst confirmation" in c.reason
    assert r.safe_versions == {} and r.remove == []


def test_tj_actions_tag_flagged_and_v46_sha_pin_not(inv_fleet: Path) -> None:
    r = scope("GHSA-mrrh-fwg8-r2c3", inv_fleet)
    svc = _affected(r, "lint-bot")
    (pkg,) = svc.packages
    assert pkg.name == "tj-actions/changed-files" and pkg.version == "v45" and pkg.pin == "floating"
    assert svc.exposure == "exposed"  # a CI run on 2025-03-14, before publication
    assert _verdict(r, "sigstore-release").verdict == "unaffected"
    assert "sigstore-release" not in {c.service for c in r.needs_confirmation}


def test_scope_accepts_a_path_and_many_advisories(inv_fleet: Path, real: Path) -> None:
    results = scope_many(
        [str(real / "osv" / "MAL-2026-2307.axios.json"), "MAL-2026-2306", "GHSA-mh6f-8j2x-4483"], inv_fleet
    )
    assert [r.advisory.id for r in results] == ["MAL-2026-2307", "MAL-2026-2306", "GHSA-mh6f-8j2x-4483"]
    assert results[2].advisory.open_ended == ["npm/flatmap-stream"]


def test_result_round_trips_as_json(inv_fleet: Path) -> None:
    r = scope("MAL-2026-2307", inv_fleet, live_from=AXIOS_FROM, live_until=AXIOS_UNTIL)
    again = MatchResult.model_validate_json(r.model_dump_json())
    assert again == r


def test_render_table(inv_fleet: Path) -> None:
    r = scope("MAL-2026-2307", inv_fleet, live_from=AXIOS_FROM, live_until=AXIOS_UNTIL)
    console = Console(record=True, width=240)
    console.print(render_scope_table(r))
    text = console.export_text()
    assert "stx-defi-dashboard" in text and "axios 1.14.1" in text and "exposed" in text


def test_unknown_advisory_id_is_an_input_error(inv_fleet: Path) -> None:
    from integrations.errors import InputError

    with pytest.raises(InputError, match="not found"):
        scope("MAL-1999-0001", inv_fleet)


def _render(result: MatchResult) -> str:
    console = Console(width=400, record=True)
    console.print(render_scope_table(result))
    return console.export_text()


def test_window_start_from_a_release_time_in_the_record(tmp_path: Path, real: Path, inv_fleet: Path) -> None:
    """A record that carries the bad release's publication time (``affected[].database_specific``)
    starts the window there; a given end before the derived start leaves the start open."""
    data = json.loads((real / "osv" / "MAL-2026-2307.axios.json").read_text())
    data["affected"][0]["database_specific"]["introduced_at"] = "2026-03-31T00:21:00Z"
    adv = tmp_path / "axios.json"
    adv.write_text(json.dumps(data))
    r = scope(str(adv), inv_fleet)
    assert (r.window.live_from, r.window.from_source) == (AXIOS_FROM, "advisory.introduced")
    # the 2026-03-30T18:02 install of web-portal-manifest predates the release: only 01:00 is inside
    assert _affected(r, "web-portal-manifest").installs_in_window == [datetime(2026, 3, 31, 1, 0, tzinfo=UTC)]
    early = scope(str(adv), inv_fleet, live_until=datetime(2026, 3, 30, tzinfo=UTC))
    assert early.window.live_from is None and early.window.from_source == "unbounded"


def test_injected_package_found_through_the_parents_advisory_folder(inv_fleet: Path) -> None:
    """scope() of plain-crypto-js alone still knows axios 1.14.1 is bad: the bundled
    osv/malicious/npm/axios/ folder is read for the parent."""
    r = scope("MAL-2026-2306", inv_fleet, live_from=AXIOS_FROM, live_until=AXIOS_UNTIL)
    assert r.remove == ["plain-crypto-js"]
    both = scope_many(["MAL-2026-2307", "MAL-2026-2306"], inv_fleet, AXIOS_FROM, AXIOS_UNTIL)
    assert both[1].remove == ["plain-crypto-js"] and both[0].remove == []
    assert "remove" in _render(r)
