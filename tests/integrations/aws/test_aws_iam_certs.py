"""aws.iam.upload_server_certificate / delete_server_certificate against moto over HTTP."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from integrations.aws import certs, iam_certs
from integrations.base import ActionContext
from integrations.errors import PermanentActionError
from integrations.sandbox.faults import inject_fault
from integrations.settings import StanchSettings

ACCOUNT = "222222222222"


def _old_cert(iam: Any, name: str = "api-tls") -> str:
    key = certs.generate_key("rsa-2048")
    issued = certs.issue_server_cert(key, "api.example.com", 30)
    iam.upload_server_certificate(
        ServerCertificateName=name, CertificateBody=issued.certificate_pem, PrivateKey=certs.key_pem(key)
    )
    return issued.serial


def test_upload_with_ca_and_swap_from(clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]) -> None:
    iam, sm = clients("iam"), clients("secretsmanager")
    old_serial = _old_cert(iam)
    ca = certs.make_ca()
    sm.create_secret(Name="pki/ca", SecretString=ca.to_secret_string())
    ctx = make_ctx(step_id="new-tls")
    params = {
        "account": ACCOUNT,
        "name": "api-tls",
        "common_name": "api.example.com",
        "path": "/cloudfront/",
        "ca_secret": "pki/ca",
        "swap_from": "api-tls",
    }
    result = iam_certs.UPLOAD.execute(ctx, params)
    assert re.fullmatch(r"api-tls-\d{12}", result.name) and result.uploaded and result.path == "/cloudfront/"
    assert (result.previous_name, result.previous_serial) == ("api-tls", old_serial)
    body = iam.get_server_certificate(ServerCertificateName=result.name)["ServerCertificate"]["CertificateBody"]
    cert = x509.load_pem_x509_certificate(body.encode())
    assert certs.cert_facts(cert)[0] == result.serial and cert.issuer == ca.certificate.subject
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    stored = json.loads(sm.get_secret_value(SecretId="stanch/server-certificates/api-tls")["SecretString"])
    assert stored["server_certificate_name"] == result.name
    assert certs.public_key_der(certs.load_key(stored["private_key"])) == certs.public_key_der(cert)
    assert stored["private_key"] in ctx.secrets and "PRIVATE KEY" not in result.model_dump_json()
    assert "PRIVATE KEY" not in json.dumps(ctx.recorded)  # type: ignore[attr-defined]
    names = {c["ServerCertificateName"] for c in iam.list_server_certificates()["ServerCertificateMetadataList"]}
    assert names == {"api-tls", result.name}  # the old one is left in place

    again = iam_certs.UPLOAD.execute(make_ctx(step_id="new-tls"), params)
    assert not again.uploaded and (again.name, again.serial) == (result.name, result.serial)

    spec = iam_certs.UPLOAD
    assert spec.compensation == iam_certs.DELETE.name and spec.compensation_params is not None
    undo = spec.compensation_params(spec.validate_params(params), result)
    assert iam_certs.DELETE.execute(make_ctx(), undo).deleted
    assert iam_certs.DELETE.execute(make_ctx(), undo).skipped == "no such certificate"


def test_interrupted_upload_reuses_stored_key_and_name(
    aws_settings: StanchSettings,
    clients: Callable[[str], Any],
    make_ctx: Callable[..., ActionContext],
    engine_retry: Callable[..., Any],
) -> None:
    inject_fault(aws_settings.aws_endpoint_url or "", "UploadServerCertificate", code="Throttling", count=1)
    params = {"account": ACCOUNT, "name": "edge", "common_name": "edge.example.com", "key_type": "ec-p256"}
    result, failures = engine_retry(lambda: iam_certs.UPLOAD.execute(make_ctx(step_id="s"), params))
    assert len(failures) == 1 and failures[0].operation == "UploadServerCertificate" and result.uploaded
    versions = clients("secretsmanager").list_secret_version_ids(SecretId="stanch/server-certificates/edge")
    assert len(versions["Versions"]) == 1  # one key, stored once, uploaded on the retry
    listed = clients("iam").list_server_certificates()["ServerCertificateMetadataList"]
    assert [c["ServerCertificateName"] for c in listed] == [result.name]


def test_missing_swap_from_is_permanent(aws_settings: StanchSettings, make_ctx: Callable[..., ActionContext]) -> None:
    with pytest.raises(PermanentActionError) as err:
        iam_certs.UPLOAD.execute(
            make_ctx(), {"account": ACCOUNT, "name": "x", "common_name": "x.example.com", "swap_from": "gone"}
        )
    assert err.value.aws_code == "NoSuchEntity"


def test_access_denied_names_permission(
    aws_settings: StanchSettings, clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]
) -> None:
    inject_fault(aws_settings.aws_endpoint_url or "", "UploadServerCertificate", status=403, code="AccessDenied")
    with pytest.raises(PermanentActionError) as err:
        iam_certs.UPLOAD.execute(make_ctx(), {"account": ACCOUNT, "name": "x", "common_name": "x.example.com"})
    assert "missing permission iam:UploadServerCertificate" in str(err.value)


def test_delete_checks_serial(clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]) -> None:
    serial = _old_cert(clients("iam"))
    kept = iam_certs.DELETE.execute(make_ctx(), {"account": ACCOUNT, "name": "api-tls", "expected_serial": "abc"})
    assert not kept.deleted and kept.skipped
    gone = iam_certs.DELETE.execute(make_ctx(), {"account": ACCOUNT, "name": "api-tls", "expected_serial": serial})
    assert gone.deleted
