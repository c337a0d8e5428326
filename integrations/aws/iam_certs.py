"""Issue a replacement IAM server certificate (ELB/CloudFront-style TLS), and delete one.

Owns: ``aws.iam.upload_server_certificate`` and ``aws.iam.delete_server_certificate`` (its
compensation, and the later clean-up of the replaced certificate). A new key and a TLS server
certificate (serverAuth, DNS SAN = ``common_name``) are made with ``certs``, issued by the CA in
``ca_secret`` or self-signed, and uploaded under a **new** name ``<name>-<yyyymmddHHMM>``; IAM
server certificates cannot be replaced in place. ``swap_from`` names the certificate being replaced:
it is checked and recorded (for the listener update and a later delete), never touched here.

Key escrow and idempotency: the key goes to Secrets Manager (``secret_name``) as JSON
``{"server_certificate_name", "certificate", "private_key"}`` at version ``uuid5(ctx.idempotency_token)``
*before* the upload. A re-run finds that version: if the named certificate exists the step is done;
if the upload was interrupted, the stored key and name are reused — never a second key or name.

Must not touch: ``flows``, ``prefect``; listeners and distributions that use the certificate.
Private keys are ``ctx.redact()``-ed and never returned.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from cryptography import x509
from pydantic import Field

from integrations.aws import certs
from integrations.aws._common import AwsParams, is_code, region_of, safe_describe, stamp, token_uuid, where
from integrations.aws.errors import aws_call
from integrations.aws.session import clients_for
from integrations.base import ActionContext, ActionResult, ActionSpec, PlannedOperation
from integrations.errors import PermanentActionError

__all__ = [
    "DELETE",
    "UPLOAD",
    "DeleteServerCertParams",
    "DeleteServerCertResult",
    "UploadServerCertParams",
    "UploadServerCertResult",
]

_NAME = r"^[A-Za-z0-9_+=,.@-]{1,115}$"  # IAM allows 128; 13 are kept for the -yyyymmddHHMM suffix


class UploadServerCertParams(AwsParams):
    name: str = Field(pattern=_NAME, description="Base name; the certificate is <name>-<yyyymmddHHMM>")
    common_name: str = Field(min_length=1, max_length=64, description="CN and DNS SAN, e.g. api.example.com")
    path: str = Field(default="/", pattern=r"^/([\x21-\x7e]*/)?$", description="IAM path, e.g. /cloudfront/")
    ca_secret: str | None = Field(default=None, description="Secret with the issuing CA; None = self-signed")
    secret_name: str | None = Field(
        default=None, description="Secret receiving the key; default stanch/server-certificates/<name>"
    )
    validity_days: int = Field(default=365, ge=1, le=825)
    key_type: certs.KeyType = "rsa-2048"
    swap_from: str | None = Field(default=None, description="Name of the certificate this one replaces")


class UploadServerCertResult(ActionResult):
    name: str
    arn: str
    server_certificate_id: str
    path: str
    serial: str
    fingerprint_sha256: str
    not_after: datetime
    secret_arn: str
    secret_version_id: str
    uploaded: bool = Field(description="False when this step's certificate already existed")
    previous_name: str | None = None
    previous_arn: str | None = None
    previous_serial: str | None = None


class DeleteServerCertParams(AwsParams):
    name: str = Field(min_length=1)
    expected_serial: str | None = Field(default=None, description="Only delete if the certificate has this serial")


class DeleteServerCertResult(ActionResult):
    name: str
    deleted: bool
    skipped: str | None = None


def _secret_name(params: UploadServerCertParams) -> str:
    return params.secret_name or f"stanch/server-certificates/{params.name}"


def _get_cert(iam: Any, name: str) -> tuple[dict[str, Any], x509.Certificate] | None:
    try:
        with aws_call("iam", "GetServerCertificate"):
            sc = iam.get_server_certificate(ServerCertificateName=name)["ServerCertificate"]
    except PermanentActionError as exc:
        if is_code(exc, "NoSuchEntity"):
            return None
        raise
    return sc["ServerCertificateMetadata"], x509.load_pem_x509_certificate(sc["CertificateBody"].encode("ascii"))


def _stored(ctx: ActionContext, sm: Any, secret: str, version_id: str) -> tuple[str, dict[str, str]] | None:
    try:
        with aws_call("secretsmanager", "GetSecretValue"):
            resp = sm.get_secret_value(SecretId=secret, VersionId=version_id)
    except PermanentActionError as exc:
        if is_code(exc, "ResourceNotFoundException"):
            return None
        raise
    ctx.redact(resp["SecretString"])
    data = json.loads(resp["SecretString"])
    ctx.redact(data["private_key"])
    return str(resp["ARN"]), data


def _store(ctx: ActionContext, sm: Any, secret: str, body: str, version_id: str) -> str:
    try:
        with aws_call("secretsmanager", "PutSecretValue"):
            return str(sm.put_secret_value(SecretId=secret, SecretString=body, ClientRequestToken=version_id)["ARN"])
    except PermanentActionError as exc:
        if not is_code(exc, "ResourceNotFoundException"):
            raise
    with aws_call("secretsmanager", "CreateSecret"):
        return str(
            sm.create_secret(
                Name=secret,
                SecretString=body,
                ClientRequestToken=version_id,
                Description="TLS server certificate private key (written by stanch aws.iam.upload_server_certificate)",
                Tags=[{"Key": "stanch:incident", "Value": ctx.incident_id}],
            )["ARN"]
        )


def _load_ca(ctx: ActionContext, sm: Any, name: str) -> certs.CertificateAuthority:
    with aws_call("secretsmanager", "GetSecretValue"):
        raw = sm.get_secret_value(SecretId=name)["SecretString"]
    try:
        ca = certs.CertificateAuthority.from_secret_string(raw)
    except (ValueError, KeyError, TypeError) as exc:
        raise PermanentActionError(
            f"CA secret {name!r} is not JSON with 'certificate' and 'private_key' PEMs ({type(exc).__name__})",
            operation="GetSecretValue",
        ) from None
    ctx.redact(ca.private_key_pem)
    return ca


def _previous(iam: Any, params: UploadServerCertParams) -> dict[str, Any]:
    if not params.swap_from:
        return {}
    found = _get_cert(iam, params.swap_from)
    if found is None:
        raise PermanentActionError(
            f"swap_from: IAM server certificate {params.swap_from!r} does not exist",
            operation="GetServerCertificate",
            aws_code="NoSuchEntity",
        )
    meta, cert = found
    return {
        "previous_name": params.swap_from,
        "previous_arn": meta["Arn"],
        "previous_serial": certs.cert_facts(cert)[0],
    }


def _result(meta: dict[str, Any], cert: x509.Certificate, **extra: Any) -> UploadServerCertResult:
    serial, fingerprint, not_after = certs.cert_facts(cert)
    return UploadServerCertResult(
        name=meta["ServerCertificateName"],
        arn=meta["Arn"],
        server_certificate_id=meta["ServerCertificateId"],
        path=meta.get("Path", "/"),
        serial=serial,
        fingerprint_sha256=fingerprint,
        not_after=not_after,
        **extra,
    )


def _upload(ctx: ActionContext, params: UploadServerCertParams) -> UploadServerCertResult:
    clients = clients_for(ctx, params.account, region_of(ctx, params))
    iam, sm = clients("iam"), clients("secretsmanager")
    secret, version_id = _secret_name(params), token_uuid(ctx, "server-certificate")
    previous = _previous(iam, params)

    stored = _stored(ctx, sm, secret, version_id)
    if stored is not None:
        secret_arn, data = stored
        name, cert_pem, key_pem = data["server_certificate_name"], data["certificate"], data["private_key"]
        existing = _get_cert(iam, name)
        if existing is not None:
            return _result(
                existing[0],
                existing[1],
                secret_arn=secret_arn,
                secret_version_id=version_id,
                uploaded=False,
                **previous,
            )
        chain = data.get("chain")
    else:
        name = f"{params.name}-{stamp()}"
        key = certs.generate_key(params.key_type)
        key_pem = certs.key_pem(key)
        ctx.redact(key_pem)
        ca = _load_ca(ctx, sm, params.ca_secret) if params.ca_secret else None
        issued = certs.issue_server_cert(key, params.common_name, params.validity_days, ca)
        cert_pem, chain = issued.certificate_pem, issued.chain_pem
        body = json.dumps(
            {"server_certificate_name": name, "certificate": cert_pem, "chain": chain, "private_key": key_pem}
        )
        ctx.redact(body)
        secret_arn = _store(ctx, sm, secret, body, version_id)

    kwargs: dict[str, Any] = {
        "Path": params.path,
        "ServerCertificateName": name,
        "CertificateBody": cert_pem,
        "PrivateKey": key_pem,
        "Tags": [{"Key": "stanch:incident", "Value": ctx.incident_id}],
    }
    if chain:
        kwargs["CertificateChain"] = chain
    with aws_call("iam", "UploadServerCertificate"):
        meta = iam.upload_server_certificate(**kwargs)["ServerCertificateMetadata"]
    meta.setdefault("ServerCertificateName", name)
    cert = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
    out = _result(meta, cert, secret_arn=secret_arn, secret_version_id=version_id, uploaded=True, **previous)
    ctx.record(
        "aws.iam.server_certificate_uploaded",
        {
            "name": out.name,
            "arn": out.arn,
            "serial": out.serial,
            "fingerprint_sha256": out.fingerprint_sha256,
            "replaces": out.previous_name,
        },
    )
    return out


def _plan(params: UploadServerCertParams, note: str) -> list[PlannedOperation]:
    return [
        PlannedOperation(
            service="secretsmanager",
            operation="PutSecretValue",
            account=params.account,
            region=params.region,
            resources=[_secret_name(params)],
            note="new private key (never shown)",
        ),
        PlannedOperation(
            service="iam",
            operation="UploadServerCertificate",
            account=params.account,
            resources=[f"server-certificate{params.path}{params.name}-<yyyymmddHHMM>"],
            note=note,
        ),
    ]


def _note(params: UploadServerCertParams) -> str:
    signer = f"CA from {params.ca_secret}" if params.ca_secret else "self-signed"
    note = f"CN={params.common_name}, new {params.key_type} key, {params.validity_days} days, {signer}"
    return note + (f"; replaces {params.swap_from} (left in place)" if params.swap_from else "")


def _describe(ctx: ActionContext, params: UploadServerCertParams) -> list[PlannedOperation]:
    iam = clients_for(ctx, params.account, region_of(ctx, params))("iam")
    previous = _previous(iam, params)
    note = _note(params)
    if previous:
        note += f" (serial {previous['previous_serial']})"
    return _plan(params, note)


def _describe_blind(ctx: ActionContext, params: UploadServerCertParams) -> list[PlannedOperation]:
    return _plan(params, _note(params))


def _delete(ctx: ActionContext, params: DeleteServerCertParams) -> DeleteServerCertResult:
    iam = clients_for(ctx, params.account, region_of(ctx, params))("iam")
    found = _get_cert(iam, params.name)
    if found is None:
        return DeleteServerCertResult(name=params.name, deleted=False, skipped="no such certificate")
    serial = certs.cert_facts(found[1])[0]
    if params.expected_serial and serial != params.expected_serial:
        return DeleteServerCertResult(
            name=params.name, deleted=False, skipped=f"serial is {serial}, not {params.expected_serial}: left alone"
        )
    with aws_call("iam", "DeleteServerCertificate"):
        iam.delete_server_certificate(ServerCertificateName=params.name)
    ctx.record("aws.iam.server_certificate_deleted", {"name": params.name, "serial": serial})
    return DeleteServerCertResult(name=params.name, deleted=True)


def _describe_delete(ctx: ActionContext, params: DeleteServerCertParams) -> list[PlannedOperation]:
    return [
        PlannedOperation(
            service="iam",
            operation="DeleteServerCertificate",
            account=params.account,
            resources=[params.name],
            note="fails with DeleteConflict while a load balancer or distribution still uses it",
        )
    ]


def _compensation_params(params: UploadServerCertParams, result: UploadServerCertResult) -> dict[str, Any]:
    return {**where(params), "name": result.name, "expected_serial": result.serial}


UPLOAD: ActionSpec[UploadServerCertParams, UploadServerCertResult] = ActionSpec(
    name="aws.iam.upload_server_certificate",
    summary="Issue a new TLS key+certificate and upload it as IAM server certificate <name>-<yyyymmddHHMM>.",
    params=UploadServerCertParams,
    result=UploadServerCertResult,
    run=_upload,
    mutating=True,
    idempotent=True,
    describe=safe_describe(_describe, _describe_blind),
    compensation="aws.iam.delete_server_certificate",
    compensation_params=_compensation_params,
)

DELETE: ActionSpec[DeleteServerCertParams, DeleteServerCertResult] = ActionSpec(
    name="aws.iam.delete_server_certificate",
    summary="Delete an IAM server certificate (only with the expected serial, if given); missing is a success.",
    params=DeleteServerCertParams,
    result=DeleteServerCertResult,
    run=_delete,
    mutating=True,
    idempotent=True,
    describe=_describe_delete,
)
