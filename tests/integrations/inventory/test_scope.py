"""Acceptance tests of ``scope`` on the real fixtures (copies under tests/fixtures/inventory)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

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
    # window end defaults to the advisory's publication time, start unbounded
    assert r.window.until_source == "advisory.published"
    assert r.window.live_until == datetime(2026, 3, 31, 2, 7, 58, tzinfo=UTC)
    assert r.window.live_from is None and r.window.from_source == "unbounded"


def test_exact_pin_on_clean_release_is_pinned_clean(inv_fleet: Path) -> None:
    r = scope("MAL-2026-2307", inv_fleet, live_from=AXIOS_FROM, live_until=AXIOS_UNTIL)
    v = _verdict(r, "billing-api")  # "axios": "1.14.0", installed at 01:00 too
    assert v.verdict == "unaffected" and v.exposure == "pinned-clean"
    assert "billing-api" in r.unaffected


def test_floating_spec_installed_in_window_is_exposed(inv_fleet: Path) -> None:
    r = scope("MAL-2026-2307", inv_fleet, live_from=AXIOS_FROM, live_until=AXIOS_UNTIL)
    svc = _affected(r, "web-portal")  # ^1.6.0, lockfile now on 1.14.0, CSV history has 01:00
    (pkg,) = svc.packages
    assert pkg.verdict == "floating-exposed" and pkg.bad_version == "1.14.1"
    assert svc.exposure == "exposed" and svc.safe_version == "1.14.0"
    # same lockfile, no install history: an analyst must confirm
    assert _verdict(r, "web-portal-quiet").verdict == "needs-confirmation"
    assert any(c.service == "web-portal-quiet" and c.kind == "floating-no-history" for c in r.needs_confirmation)


def test_floating_spec_with_installs_outside_window_is_not_exposed(inv_fleet: Path) -> None:
    later = datetime(2026, 3, 31, 0, 30, tzinfo=UTC)
    r = scope(
        "MAL-2026-2307",
        inv_fleet,
        live_from=later,
        live_until=datetime(2026, 3, 31, 0, 40, tzinfo=UTC),
    )
    v = _verdict(r, "web-portal")
    assert v.verdict == "unaffected" and v.exposure == "not-exposed"


def test_safe_version_per_release_line(inv_fleet: Path) -> None:
    r = scope("MAL-2026-2307", inv_fleet, live_from=AXIOS_FROM, live_until=AXIOS_UNTIL)
    assert _affected(r, "legacy-admin").safe_version == "0.30.3"
    details = {d.bad_version: d.safe_version for d in r.safe_version_details}
    assert details == {"0.30.4": "0.30.3", "1.14.1": "1.14.0"}
    assert r.safe_versions == {"axios": "1.14.0"}


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
    assert r.safe_versions == {}


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
