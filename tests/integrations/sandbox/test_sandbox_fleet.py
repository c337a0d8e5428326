"""seed_fleet: three accounts, the affected desktop-app, and an inventory the loader accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from integrations.aws.session import clients_for
from integrations.inventory import scope
from integrations.inventory.model import load_inventory
from integrations.sandbox.fleet import SandboxFleet, seed_fleet
from integrations.sandbox.observe import access_key_statuses, certificate_facts, release_manifest
from integrations.settings import StanchSettings


def test_inventory_round_trips(fleet: SandboxFleet) -> None:
    inv = load_inventory(fleet.inventory_path)
    assert [s.name for s in inv.services] == ["desktop-app", "web-dashboard", "billing-api"]
    desk = inv.service("desktop-app")
    assert desk.account == "222222222222" and desk.ci_user == "ci-desktop-app"
    assert desk.signing_certificate == fleet.service("desktop-app").certificate_arn
    assert desk.deploy_target is not None and desk.deploy_target.bucket == "desktop-app-releases"
    assert desk.installs[0].at.isoformat() == "2026-03-31T01:00:00+00:00"
    assert inv.audiences["desktop-users"].slack_channel == "#desktop-users"
    assert len(inv.audiences["desktop-users"].emails) == 3
    for svc in inv.services:
        for lock in svc.lockfiles:
            assert inv.resolve(lock).is_file()


def test_lockfiles(fleet: SandboxFleet) -> None:
    inv = load_inventory(fleet.inventory_path)
    desk = json.loads(inv.resolve(inv.service("desktop-app").lockfiles[0]).read_text())
    assert desk["packages"]["node_modules/axios"]["version"] == "1.14.1"
    assert desk["packages"]["node_modules/plain-crypto-js"]["version"] == "4.2.1"
    web = json.loads(inv.resolve(inv.service("web-dashboard").lockfiles[0]).read_text())
    assert web["packages"][""]["dependencies"]["axios"] == "1.14.0"
    assert web["packages"]["node_modules/axios"]["version"] == "1.14.0"
    assert "node_modules/plain-crypto-js" not in web["packages"]
    reqs = inv.resolve(inv.service("billing-api").lockfiles[0]).read_text()
    assert "--hash=sha256:" in reqs


def test_aws_state_per_account(fleet: SandboxFleet, aws_settings: StanchSettings) -> None:
    ep = fleet.endpoint_url
    for svc in fleet.services.values():
        statuses = access_key_statuses(ep, svc.account, svc.ci_user)
        assert statuses == dict.fromkeys(svc.access_key_ids, "Active")
    assert len(fleet.service("desktop-app").access_key_ids) == 2
    users_in_111 = [
        u["UserName"] for u in clients_for(aws_settings, "111111111111")("iam").list_users()["Users"]
    ]
    assert users_in_111 == ["ci-web-dashboard"]

    cert = certificate_facts(ep, "222222222222", fleet.service("desktop-app").certificate_arn or "")
    assert cert["issuer"] == "CN=stanch sandbox code-signing CA"
    assert release_manifest(ep, "222222222222", "desktop-app-releases")["version"] == "4.2.0"
    ses = clients_for(aws_settings, "222222222222")("ses")
    assert "security@desktop-app.example" in ses.list_identities()["Identities"]
    web_ses = clients_for(aws_settings, "111111111111")("ses")
    assert "security@web-dashboard.example" in web_ses.list_identities()["Identities"]
    secrets = clients_for(aws_settings, "222222222222")("secretsmanager").list_secrets()["SecretList"]
    assert {s["Name"] for s in secrets} == {"stanch/sandbox/ca", "desktop-app/signing-key"}


def test_two_lines_variant_scopes_to_one_pin_per_line(aws_endpoint: str, tmp_path: Path) -> None:
    """Variant ``two-lines``: legacy-desktop (axios 0.30.4) beside desktop-app (1.14.1); each
    affected service carries its own line's pin, and the release bucket exists in moto."""
    fleet = seed_fleet(aws_endpoint, tmp_path / "two-lines", variant="two-lines")
    legacy = fleet.service("legacy-desktop")
    assert legacy.affected and legacy.release_bucket == "legacy-desktop-releases"
    assert release_manifest(aws_endpoint, legacy.account, legacy.release_bucket)["version"] == "1.9.0"
    r = scope("MAL-2026-2307", fleet.inventory_path)
    pins = {s.name: s.pins for s in r.affected}
    assert pins == {"desktop-app": {"axios": "1.14.0"}, "legacy-desktop": {"axios": "0.30.3"}}
    with pytest.raises(ValueError, match="unknown sandbox fleet variant"):
        seed_fleet(aws_endpoint, tmp_path / "x", variant="three-lines")
