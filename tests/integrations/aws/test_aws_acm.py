"""aws.acm.rotate_certificate against the seeded sandbox fleet (CA in Secrets Manager)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from integrations.aws import acm, certs
from integrations.base import ActionContext
from integrations.errors import PermanentActionError, TransientActionError
from integrations.sandbox.faults import inject_fault
from integrations.sandbox.fleet import SandboxFleet
from integrations.sandbox.observe import certificate_facts, secret_value

ACCOUNT = "222222222222"


def _params(fleet: SandboxFleet, **over: Any) -> dict[str, Any]:
    svc = fleet.service("desktop-app")
    return {
        "account": ACCOUNT,
        "region": "us-east-1",
        "certificate_arn": svc.certificate_arn,
        "secret_name": svc.signing_secret,
        "ca_secret": fleet.ca_secret,
        **over,
    }


def test_rotate_reimports_same_arn_with_new_key(
    fleet: SandboxFleet, make_ctx: Callable[..., ActionContext]
) -> None:
    ep = fleet.endpoint_url
    arn = fleet.service("desktop-app").certificate_arn or ""
    before = certificate_facts(ep, ACCOUNT, arn)
    ctx = make_ctx(step_id="rotate-signing-cert")
    result = acm.ROTATE.execute(ctx, _params(fleet))

    after = certificate_facts(ep, ACCOUNT, arn)
    assert result.certificate_arn == arn and result.rotated
    assert result.old_serial == before["serial"] and result.new_serial == after["serial"] != before["serial"]
    assert result.new_fingerprint_sha256 == after["fingerprint_sha256"]
    assert after["issuer"] == before["issuer"] == result.issuer and "sandbox" in after["issuer"]
    assert ExtendedKeyUsageOID.CODE_SIGNING.dotted_string in after["extended_key_usage"]

    secret = secret_value(ep, ACCOUNT, "desktop-app/signing-key")
    assert secret["version_id"] == result.secret_version_id == acm.rotation_version_id(ctx)
    assert certs.public_key_der(certs.load_key(secret["value"])) == after["public_key_der"]
    # the key is redacted and appears in no output
    assert secret["value"] in ctx.secrets
    assert "PRIVATE KEY" not in result.model_dump_json() and "PRIVATE KEY" not in str(ctx.recorded)  # type: ignore[attr-defined]


def test_rotate_twice_is_idempotent(fleet: SandboxFleet, make_ctx: Callable[..., ActionContext]) -> None:
    first = acm.ROTATE.execute(make_ctx(step_id="rot"), _params(fleet))
    again = acm.ROTATE.execute(make_ctx(step_id="rot"), _params(fleet))
    assert not again.rotated
    assert (again.new_serial, again.old_serial, again.secret_version_id) == (
        first.new_serial,
        first.old_serial,
        first.secret_version_id,
    )
    # another step (or incident) does rotate again
    other = acm.ROTATE.execute(make_ctx(step_id="rot-2"), _params(fleet))
    assert other.rotated and other.old_serial == first.new_serial


def test_transient_import_failure_then_retry_reuses_stored_key(
    fleet: SandboxFleet, make_ctx: Callable[..., ActionContext]
) -> None:
    inject_fault(fleet.endpoint_url, "ImportCertificate", status=500, code="InternalFailure", count=1)
    with pytest.raises(TransientActionError) as err:
        acm.ROTATE.execute(make_ctx(step_id="rot"), _params(fleet))
    assert err.value.operation == "ImportCertificate"
    arn = fleet.service("desktop-app").certificate_arn or ""
    _assert_consistent(fleet, arn)  # the new key is only pending: AWSCURRENT still matches the certificate

    result = acm.ROTATE.execute(make_ctx(step_id="rot"), _params(fleet))
    assert result.rotated
    after = certificate_facts(fleet.endpoint_url, ACCOUNT, result.certificate_arn)
    secret = secret_value(fleet.endpoint_url, ACCOUNT, "desktop-app/signing-key")
    assert secret["version_id"] == result.secret_version_id == acm.rotation_version_id(make_ctx(step_id="rot"))
    assert certs.public_key_der(certs.load_key(secret["value"])) == after["public_key_der"]  # no second key


def _assert_consistent(fleet: SandboxFleet, arn: str) -> None:
    """Read back from moto: the secret's AWSCURRENT key is the certificate's key."""
    current = secret_value(fleet.endpoint_url, ACCOUNT, "desktop-app/signing-key")["value"]
    cert = certificate_facts(fleet.endpoint_url, ACCOUNT, arn)
    assert certs.public_key_der(certs.load_key(current)) == cert["public_key_der"]


def test_access_denied_import_leaves_secret_and_certificate_consistent(
    fleet: SandboxFleet, make_ctx: Callable[..., ActionContext]
) -> None:
    arn = fleet.service("desktop-app").certificate_arn or ""
    acm.ROTATE.execute(make_ctx(step_id="first"), _params(fleet))  # the secret's key now matches the cert
    before = secret_value(fleet.endpoint_url, ACCOUNT, "desktop-app/signing-key")
    serial = certificate_facts(fleet.endpoint_url, ACCOUNT, arn)["serial"]
    inject_fault(fleet.endpoint_url, "ImportCertificate", status=400, code="AccessDeniedException")
    with pytest.raises(PermanentActionError) as err:
        acm.ROTATE.execute(make_ctx(step_id="denied"), _params(fleet))
    assert err.value.operation == "ImportCertificate"
    after = secret_value(fleet.endpoint_url, ACCOUNT, "desktop-app/signing-key")
    assert after["version_id"] == before["version_id"] and certificate_facts(
        fleet.endpoint_url, ACCOUNT, arn)["serial"] == serial
    _assert_consistent(fleet, arn)


def test_unknown_certificate_is_permanent(
    fleet: SandboxFleet, make_ctx: Callable[..., ActionContext]
) -> None:
    bad = f"arn:aws:acm:us-east-1:{ACCOUNT}:certificate/00000000-0000-0000-0000-000000000000"
    with pytest.raises(PermanentActionError) as err:
        acm.ROTATE.execute(make_ctx(), _params(fleet, certificate_arn=bad))
    assert err.value.operation == "GetCertificate" and err.value.aws_code == "ResourceNotFoundException"


def test_self_signed_without_ca_and_new_secret(
    fleet: SandboxFleet, make_ctx: Callable[..., ActionContext]
) -> None:
    result = acm.ROTATE.execute(
        make_ctx(),
        _params(
            fleet, ca_secret=None, secret_name="desktop-app/new-key", common_name="Desk", key_type="rsa-2048"
        ),
    )
    facts = certificate_facts(fleet.endpoint_url, ACCOUNT, result.certificate_arn)
    assert facts["issuer"] == facts["subject"] == "CN=Desk"
    assert (
        secret_value(fleet.endpoint_url, ACCOUNT, "desktop-app/new-key")["version_id"]
        == result.secret_version_id
    )


def test_describe_is_read_only(fleet: SandboxFleet, make_ctx: Callable[..., ActionContext]) -> None:
    arn = fleet.service("desktop-app").certificate_arn or ""
    before = certificate_facts(fleet.endpoint_url, ACCOUNT, arn)["serial"]
    assert acm.ROTATE.describe is not None
    ops = acm.ROTATE.describe(make_ctx(), acm.RotateCertificateParams.model_validate(_params(fleet)))
    assert [o.operation for o in ops] == ["GetSecretValue", "PutSecretValue", "ImportCertificate",
                                               "UpdateSecretVersionStage"]
    assert before in (ops[-2].note or "")
    assert certificate_facts(fleet.endpoint_url, ACCOUNT, arn)["serial"] == before

