"""Every probe against a real moto server (one per module) and the Slack stand-in: it fails on
the wrong state, saying what it observed and where, and passes once the state is right.

The tests share one seeded fleet; each touches only its own resources (so any order or split over
xdist workers works) and moves them from a wrong state to the right one, as a runbook does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient

from integrations.aws import certs
from integrations.aws.session import clear_client_cache, clients_for
from integrations.errors import ConfigurationError
from integrations.probes import ProbeContext, ProbeRegistry, default_probes
from integrations.sandbox.fleet import SandboxFleet, seed_fleet
from integrations.sandbox.moto_server import MotoServer
from integrations.sandbox.slack_standin import SlackStandIn
from integrations.settings import StanchSettings
from integrations.slack import REPORT_EVENT

DESKTOP = "222222222222"
WEB = "111111111111"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MotoServer, SandboxFleet, SlackStandIn]]:
    clear_client_cache()
    with MotoServer() as moto, SlackStandIn() as slack:
        moto.reset()  # moto's backends are shared by every server of this process
        fleet = seed_fleet(moto.url, tmp_path_factory.mktemp("probes") / "fleet")
        yield moto, fleet, slack
    clear_client_cache()


@pytest.fixture(scope="module")
def registry() -> ProbeRegistry:
    return default_probes()


@pytest.fixture(scope="module")
def ctx(world: tuple[MotoServer, SandboxFleet, SlackStandIn]) -> ProbeContext:
    moto, fleet, slack = world
    return ProbeContext(aws=moto.url, slack_base_url=slack.api_url, slack_token=slack.token,
                        inventory_path=Path(fleet.inventory_path),
                        incident={"fleet": fleet.model_dump(mode="json")})


def _clients(ctx: ProbeContext, account: str) -> Any:
    return clients_for(StanchSettings(aws_endpoint_url=ctx.aws, aws_region="us-east-1"), account)


def test_registry_is_closed_and_checks_params(registry: ProbeRegistry, ctx: ProbeContext) -> None:
    assert {"iam.ci_keys_inactive", "iam.keys_untouched", "acm.certificate_reissued",
            "s3.manifest_pins_safe_version", "ses.one_email_per_address", "slack.report_per_step",
            "secretsmanager.secret_matches_certificate"} <= set(registry.names())
    with pytest.raises(ConfigurationError, match=r"unknown probe 'iam\.nope'"):
        registry.run("iam.nope", {}, ctx)
    with pytest.raises(ConfigurationError, match="invalid parameters"):
        registry.run("iam.ci_keys_inactive", {"sevices": ["x"]}, ctx)
    with pytest.raises(ConfigurationError, match="expect"):
        registry.check_params("s3.manifest_pins_safe_version", {})
    # An observation that fails (an unknown service) is a failed result, never an exception.
    failed = registry.run("iam.ci_keys_inactive", {"services": ["no-such-service"]}, ctx)
    assert not failed.passed and "no-such-service" in failed.detail


def test_iam_probes(registry: ProbeRegistry, ctx: ProbeContext, world: Any) -> None:
    fleet: SandboxFleet = world[1]
    desktop, web = fleet.service("desktop-app"), fleet.service("web-dashboard")
    untouched_before = registry.run("iam.keys_untouched", {}, ctx)
    assert untouched_before.passed, untouched_before.detail
    after = replace(ctx, before={"iam.keys_untouched": untouched_before.observed})

    r = registry.run("iam.ci_keys_inactive", {}, ctx)
    assert not r.passed
    assert f"desktop-app in account {DESKTOP}" in r.detail and "still Active" in r.detail
    assert r.observed["desktop-app"]["keys"] == dict.fromkeys(desktop.access_key_ids, "Active")
    iam = _clients(ctx, DESKTOP)("iam")
    for key in desktop.access_key_ids:
        iam.update_access_key(UserName=desktop.ci_user, AccessKeyId=key, Status="Inactive")
    assert registry.run("iam.ci_keys_inactive", {}, ctx).passed
    assert registry.run("iam.keys_untouched", {}, after).passed

    web_iam = _clients(ctx, WEB)("iam")
    web_iam.update_access_key(UserName=web.ci_user, AccessKeyId=web.access_key_ids[0], Status="Inactive")
    r = registry.run("iam.keys_untouched", {}, after)
    assert not r.passed and f"web-dashboard in account {WEB}: keys changed" in r.detail
    web_iam.update_access_key(UserName=web.ci_user, AccessKeyId=web.access_key_ids[0], Status="Active")
    assert registry.run("iam.keys_untouched", {}, after).passed


def test_certificate_and_secret_probes(registry: ProbeRegistry, ctx: ProbeContext, world: Any) -> None:
    fleet: SandboxFleet = world[1]
    desktop = fleet.service("desktop-app")
    assert desktop.certificate_arn and desktop.signing_secret
    baseline = registry.run("acm.certificate_reissued", {}, ctx)
    assert baseline.passed and "baseline" in baseline.detail
    after = replace(ctx, before={"acm.certificate_reissued": baseline.observed})
    assert registry.run("secretsmanager.secret_matches_certificate", {}, ctx).passed

    # Not re-imported: the probe fails and names the service, the account and the unchanged serial.
    r = registry.run("acm.certificate_reissued", {}, after)
    old_serial = baseline.observed["desktop-app"]["serial"]
    assert not r.passed
    assert f"desktop-app in account {DESKTOP}: serial unchanged ({old_serial})" in r.detail
    assert r.observed["desktop-app"]["serial"] == old_serial

    # Re-import a new certificate at the same ARN, but leave the old key in the secret.
    c = _clients(ctx, DESKTOP)
    ca = certs.CertificateAuthority.from_secret_string(
        _clients(ctx, fleet.ca_account)("secretsmanager").get_secret_value(SecretId=fleet.ca_secret)["SecretString"])
    key = certs.generate_key("ec-p256")
    issued = certs.issue_code_signing_cert(key, "Desktop App Code Signing (rotated)", 365, ca)
    c("acm").import_certificate(CertificateArn=desktop.certificate_arn, Certificate=issued.certificate_pem.encode(),
                                PrivateKey=certs.key_pem(key).encode(),
                                CertificateChain=(issued.chain_pem or "").encode())
    r = registry.run("acm.certificate_reissued", {}, after)
    assert r.passed, r.detail
    assert r.observed["desktop-app"]["serial"] != old_serial
    r = registry.run("secretsmanager.secret_matches_certificate", {}, ctx)
    assert not r.passed and f"desktop-app in account {DESKTOP}: {desktop.signing_secret} does not hold" in r.detail
    assert r.observed["desktop-app"]["match"] is False
    assert "PRIVATE KEY" not in json.dumps(r.observed)  # the secret never reaches the scorecard
    c("secretsmanager").put_secret_value(SecretId=desktop.signing_secret, SecretString=certs.key_pem(key))
    assert registry.run("secretsmanager.secret_matches_certificate", {}, ctx).passed


def test_manifest_probe(registry: ProbeRegistry, ctx: ProbeContext, world: Any) -> None:
    fleet: SandboxFleet = world[1]
    desktop = fleet.service("desktop-app")
    params = {"expect": {"desktop-app": {"axios": "1.14.0"}}, "absent": ["plain-crypto-js"]}
    r = registry.run("s3.manifest_pins_safe_version", params, ctx)
    assert not r.passed
    assert f"desktop-app in account {DESKTOP}: axios pinned to '^1.6.0', expected '1.14.0'" in r.detail
    manifest = {"schema": 1, "version": "4.2.1", "min_supported_version": "4.2.1", "pinned": {"axios": "1.14.0"},
                "notes": "rebuilt", "incident": "INC-1", "published_at": "2026-03-31T04:00:00+00:00"}
    assert desktop.release_bucket and desktop.release_key
    _clients(ctx, DESKTOP)("s3").put_object(Bucket=desktop.release_bucket, Key=desktop.release_key,
                                            Body=json.dumps(manifest).encode())
    r = registry.run("s3.manifest_pins_safe_version", params, ctx)
    assert r.passed, r.detail
    assert r.observed["desktop-app"]["pinned"] == {"axios": "1.14.0"}


def test_email_probe(registry: ProbeRegistry, ctx: ProbeContext, world: Any) -> None:
    fleet: SandboxFleet = world[1]
    audience = fleet.audiences["desktop-users"]
    r = registry.run("ses.one_email_per_address", {}, ctx)
    assert not r.passed and f"{audience.emails[0]}: 0 e-mails" in r.detail
    assert r.observed == {e: 0 for e in audience.emails}  # what failed is observed, not `{}`
    ses = _clients(ctx, DESKTOP)("ses")

    def send(to: list[str]) -> None:
        ses.send_email(Source=audience.sender, Destination={"ToAddresses": to},
                       Message={"Subject": {"Data": "update"}, "Body": {"Text": {"Data": "please update"}}})

    send(audience.emails)
    assert registry.run("ses.one_email_per_address", {}, ctx).passed
    send(audience.emails[:1])
    r = registry.run("ses.one_email_per_address", {}, ctx)
    assert not r.passed and r.detail == f"{audience.emails[0]}: 2 e-mails"
    assert r.observed[audience.emails[0]] == 2


def test_slack_report_probe(registry: ProbeRegistry, ctx: ProbeContext, world: Any) -> None:
    slack: SlackStandIn = world[2]
    client = WebClient(token=slack.token, base_url=slack.api_url)
    header = client.chat_postMessage(channel="C0INCIDENT", text="INC-1 header")
    inc = replace(ctx, incident={**ctx.incident, "slack": {"channel": "C0INCIDENT", "ts": header["ts"]}})

    def report(step: str) -> None:
        client.chat_postMessage(channel="C0INCIDENT", thread_ts=header["ts"], text=f"{step} done",
                                metadata={"event_type": REPORT_EVENT,
                                          "event_payload": {"incident": "INC-1", "step": step,
                                                            "status": "succeeded", "part": 0}})

    report("scope")
    report("announce")
    client.chat_postMessage(channel="C0INCIDENT", thread_ts=header["ts"], text="a human comment")
    params = {"steps": ["scope", "announce", "revoke-ci-keys"]}
    r = registry.run("slack.report_per_step", params, inc)
    assert not r.passed and r.detail == "revoke-ci-keys: no report"
    assert r.observed == {"scope": ["succeeded"], "announce": ["succeeded"]}
    report("revoke-ci-keys")
    assert registry.run("slack.report_per_step", params, inc).passed
    report("scope")  # a resumed run that posted twice
    r = registry.run("slack.report_per_step", params, inc)
    assert not r.passed and "scope: 2 reports" in r.detail
    # Default: every step of the incident's runbook (incident.json's runbook_path).
    runbook = Path(__file__).parents[3] / "runbooks" / "compromised-dependency.yaml"
    r = registry.run("slack.report_per_step", {}, replace(inc, incident={**inc.incident, "runbook_path": str(runbook)}))
    assert r.detail == ("rotate-signing-cert: no report; publish-update: no report; notify-users-email: no report; "
                        "notify-users-slack: no report; containment-failed: no report; "
                        "scope: 2 reports with the same status")
    # No thread recorded (Slack was down at the start): a failed result, not an exception.
    assert not registry.run("slack.report_per_step", params, ctx).passed


def test_side_effect_counter_probe(registry: ProbeRegistry, ctx: ProbeContext, world: Any) -> None:
    """The sandbox counts successful mutating calls per target; a repeat on one target fails the
    probe and names it; a failed call is no side effect; without its counters it cannot pass."""
    from integrations.sandbox.faults import add_counter, clear_faults, inject_fault, list_faults

    fleet: SandboxFleet = world[1]
    billing = fleet.service("billing-api")
    assert not registry.run("aws.no_duplicate_side_effects", {}, ctx).passed  # no counters installed
    counters = registry.counters([("aws.no_duplicate_side_effects", {"operations": ["UpdateAccessKey"]}),
                                  ("iam.ci_keys_inactive", {}), ("aws.no_duplicate_side_effects", {})])
    assert [c["action"] for c in counters] == ["UpdateAccessKey", "ImportCertificate", "PutObject", "SendEmail",
                                               "PutSecretValue"]
    ids = [add_counter(ctx.aws, c["action"], service=c["service"], label=c["label"]) for c in counters]
    fault = ""
    try:
        iam = _clients(ctx, billing.account)("iam")
        key = billing.access_key_ids[0]
        fault = inject_fault(ctx.aws, "UpdateAccessKey", service="iam", status=503, code="ServiceUnavailable", count=1)
        iam.update_access_key(UserName=billing.ci_user, AccessKeyId=key, Status="Active")  # botocore retries the 503
        r = registry.run("aws.no_duplicate_side_effects", {"operations": ["UpdateAccessKey"]}, ctx)
        target = f"{billing.account} UserName={billing.ci_user} AccessKeyId={key}"
        assert r.passed and r.observed == {"UpdateAccessKey": {target: 1}}, r
        faulted = next(f for f in list_faults(ctx.aws) if f.id == fault)
        assert (faulted.fired, faulted.retried, faulted.survived) == (1, 1, 1)
        iam.update_access_key(UserName=billing.ci_user, AccessKeyId=key, Status="Active")
        r = registry.run("aws.no_duplicate_side_effects", {}, ctx)
        assert not r.passed and r.detail == f"UpdateAccessKey {target}: 2 times", r.detail
        assert registry.run("aws.no_duplicate_side_effects", {"operations": ["UpdateAccessKey"], "at_most": 2},
                            ctx).passed
    finally:
        for rule_id in [i for i in (*ids, fault) if i]:
            clear_faults(ctx.aws, rule_id)
