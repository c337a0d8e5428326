"""Rotate an imported (code-signing) ACM certificate in place.

Owns: ``aws.acm.rotate_certificate``. A new key pair (EC P-256 by default) and a code-signing
certificate are made locally with ``cryptography``, issued by a CA whose certificate and key are
read from Secrets Manager (``ca_secret``, JSON ``{"certificate", "private_key"}``) or self-signed
when no CA is configured. The private key goes to Secrets Manager (``secret_name``) and the
certificate is re-imported at the **same ARN**, so everything that references the ARN picks up
the new certificate. The key is written as AWSPENDING and promoted to AWSCURRENT only after the
import succeeded, so a refused import (AccessDenied) leaves secret and certificate consistent.

Idempotency (check-then-act, crash-safe): the secret version id is ``uuid5(ctx.idempotency_token)``.
 0. Before anything changes, the serial and fingerprint at the ARN are recorded (a before-image,
    ``ctx.observe``); a resumed attempt reads the recorded one.
 1. If that secret version exists and the certificate at the ARN has its public key, the rotation
    already happened: what a crash after the import may have skipped is finished — the audit
    tags (if the rotation token tag is missing) and the ``aws.acm.certificate_rotated`` event
    (once, with the old serial from the before-image) — and the facts are returned
    (``rotated=False``).
 2. If the secret version exists but the import did not happen (crash in between), the stored key
    is reused, so a retry never creates a second key.
 3. Otherwise a new key is made, stored, and imported.
The certificate is tagged ``stanch:incident``, ``stanch:rotation-token`` and
``stanch:previous-serial`` for the audit trail.

No compensation: the previous key is presumed compromised and is not kept, so there is nothing
safe to roll back to.

Must not touch: ``flows``, ``prefect``. Private keys are ``ctx.redact()``-ed and never returned.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from cryptography import x509
from pydantic import Field

from integrations.aws import certs
from integrations.aws._common import AwsParams, region_of, safe_describe, tag_dict
from integrations.aws.errors import aws_call
from integrations.aws.session import clients_for
from integrations.base import ActionContext, ActionResult, ActionSpec, PlannedOperation
from integrations.errors import PermanentActionError

__all__ = ["ROTATE", "RotateCertificateParams", "RotateCertificateResult", "rotation_version_id"]

_TOKEN_NS = uuid.UUID("5f1c7f0e-2b7e-4c55-9d0b-6a1f3e2d9c41")


class RotateCertificateParams(AwsParams):
    region: str | None = None
    certificate_arn: str = Field(pattern=r"^arn:aws[\w-]*:acm:", description="Imported ACM certificate")
    secret_name: str = Field(min_length=1, description="Secrets Manager secret receiving the new private key")
    common_name: str | None = Field(default=None, description="Defaults to the current certificate's CN")
    validity_days: int = Field(default=365, ge=1, le=825)
    ca_secret: str | None = Field(default=None, description="Secret with the issuing CA; None = self-signed")
    key_type: certs.KeyType = "ec-p256"


class RotateCertificateResult(ActionResult):
    certificate_arn: str
    old_serial: str | None
    old_fingerprint_sha256: str | None = Field(default=None, description="SHA-256 of the replaced certificate")
    new_serial: str
    new_fingerprint_sha256: str
    not_after: datetime
    secret_arn: str
    secret_version_id: str
    issuer: str
    rotated: bool = Field(description="False when this incident/step had already rotated it")


def rotation_version_id(ctx: ActionContext) -> str:
    """The Secrets Manager ``ClientRequestToken``/version id of this step's new key."""
    return str(uuid.uuid5(_TOKEN_NS, ctx.idempotency_token))


def _current_cert(acm: Any, arn: str) -> x509.Certificate:
    with aws_call("acm", "GetCertificate"):
        pem = acm.get_certificate(CertificateArn=arn)["Certificate"]
    return x509.load_pem_x509_certificate(pem.encode("ascii"))


def _common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else "code-signing"


def _secret_version(sm: Any, name: str, version_id: str) -> tuple[str, str] | None:
    """(arn, SecretString) of one version, or None if the secret or the version does not exist."""
    try:
        with aws_call("secretsmanager", "GetSecretValue"):
            resp = sm.get_secret_value(SecretId=name, VersionId=version_id)
    except PermanentActionError as exc:
        if exc.aws_code == "ResourceNotFoundException":
            return None
        raise
    return resp["ARN"], resp["SecretString"]


def _load_ca(ctx: ActionContext, sm: Any, name: str) -> certs.CertificateAuthority:
    with aws_call("secretsmanager", "GetSecretValue"):
        raw = sm.get_secret_value(SecretId=name)["SecretString"]
    try:
        ca = certs.CertificateAuthority.from_secret_string(raw)
    except (ValueError, KeyError, TypeError) as exc:
        raise PermanentActionError(
            f"CA secret {name!r} is not JSON with 'certificate' and 'private_key' PEMs "
            f"({type(exc).__name__})",
            operation="GetSecretValue",
        ) from None
    ctx.redact(ca.private_key_pem)
    return ca


def _store_key(sm: Any, name: str, pem: str, version_id: str, ctx: ActionContext) -> str:
    """Write the key as a new **AWSPENDING** version (AWSCURRENT stays on the key that matches the
    certificate until the import succeeded, see ``_promote``); create the secret if missing (its
    first version is necessarily AWSCURRENT: there is no previous key to stay consistent with).
    Returns the ARN."""
    try:
        with aws_call("secretsmanager", "PutSecretValue"):
            return str(
                sm.put_secret_value(SecretId=name, SecretString=pem, ClientRequestToken=version_id,
                                    VersionStages=["AWSPENDING"])["ARN"]
            )
    except PermanentActionError as exc:
        if exc.aws_code != "ResourceNotFoundException":
            raise
    with aws_call("secretsmanager", "CreateSecret"):
        resp = sm.create_secret(
            Name=name,
            SecretString=pem,
            ClientRequestToken=version_id,
            Description="Code-signing private key (written by stanch aws.acm.rotate_certificate)",
            Tags=[{"Key": "stanch:incident", "Value": ctx.incident_id}],
        )
    return str(resp["ARN"])


def _promote(sm: Any, name: str, version_id: str) -> None:
    """Move AWSCURRENT to this step's key, once the certificate carries it (idempotent). Until then
    a failed or refused ImportCertificate leaves the secret's current key matching the certificate."""
    with aws_call("secretsmanager", "DescribeSecret"):
        stages = sm.describe_secret(SecretId=name).get("VersionIdsToStages") or {}
    if "AWSCURRENT" in stages.get(version_id, []):
        return
    previous = next((v for v, labels in stages.items() if "AWSCURRENT" in labels), None)
    kwargs: dict[str, Any] = {"SecretId": name, "VersionStage": "AWSCURRENT", "MoveToVersionId": version_id}
    if previous:
        kwargs["RemoveFromVersionId"] = previous
    with aws_call("secretsmanager", "UpdateSecretVersionStage"):
        sm.update_secret_version_stage(**kwargs)


def _tags(acm: Any, arn: str) -> dict[str, str]:
    with aws_call("acm", "ListTagsForCertificate"):
        return tag_dict(acm.list_tags_for_certificate(CertificateArn=arn).get("Tags"))


def _audit_tags(ctx: ActionContext, acm: Any, arn: str, version_id: str, previous_serial: str) -> None:
    with aws_call("acm", "AddTagsToCertificate"):
        acm.add_tags_to_certificate(
            CertificateArn=arn,
            Tags=[
                {"Key": "stanch:incident", "Value": ctx.incident_id},
                {"Key": "stanch:rotation-token", "Value": version_id},
                {"Key": "stanch:previous-serial", "Value": previous_serial},
            ],
        )


def _rotated_event(params: RotateCertificateParams, old_serial: str | None, new_serial: str,
                   fingerprint: str, version_id: str) -> dict[str, Any]:
    return {
        "certificate_arn": params.certificate_arn,
        "old_serial": old_serial,
        "new_serial": new_serial,
        "new_fingerprint_sha256": fingerprint,
        "secret_name": params.secret_name,
        "secret_version_id": version_id,
    }


def _finish_imported(ctx: ActionContext, acm: Any, params: RotateCertificateParams, current: x509.Certificate,
                     before: dict[str, Any], secret_arn: str, version_id: str) -> RotateCertificateResult:
    """The certificate at the ARN already carries this step's key: an earlier attempt imported it.
    Finish what a crash after the import may have left undone — the audit tags and the
    ``certificate_rotated`` event (once) — with the previous serial from the before-image."""
    serial, fingerprint, not_after = certs.cert_facts(current)
    tags = _tags(acm, params.certificate_arn)
    old_serial = before.get("serial")
    if old_serial == serial:  # before-image taken after the import (an incident older than it)
        old_serial = tags.get("stanch:previous-serial")
    if tags.get("stanch:rotation-token") != version_id and old_serial:
        _audit_tags(ctx, acm, params.certificate_arn, version_id, old_serial)
    ctx.record_once(
        "aws.acm.certificate_rotated",
        _rotated_event(params, old_serial, serial, fingerprint, version_id) | {"reconciled": True},
        match=("certificate_arn", "new_serial"),
    )
    return RotateCertificateResult(
        certificate_arn=params.certificate_arn,
        old_serial=old_serial,
        old_fingerprint_sha256=before.get("fingerprint_sha256") if before.get("serial") != serial else None,
        new_serial=serial,
        new_fingerprint_sha256=fingerprint,
        not_after=not_after,
        secret_arn=secret_arn,
        secret_version_id=version_id,
        issuer=current.issuer.rfc4514_string(),
        rotated=False,
    )


def _rotate(ctx: ActionContext, params: RotateCertificateParams) -> RotateCertificateResult:
    clients = clients_for(ctx, params.account, region_of(ctx, params))
    acm, sm = clients("acm"), clients("secretsmanager")
    version_id = rotation_version_id(ctx)
    current = _current_cert(acm, params.certificate_arn)
    current_serial, current_fp, _ = certs.cert_facts(current)
    # Before-image, recorded before anything changes: the serial a resumed attempt reports as old.
    before = ctx.observe(f"acm:{params.certificate_arn}",
                         {"serial": current_serial, "fingerprint_sha256": current_fp})

    stored = _secret_version(sm, params.secret_name, version_id)
    if stored is not None:
        secret_arn, key_pem = stored
        ctx.redact(key_pem)
        key = certs.load_key(key_pem)
        if certs.public_key_der(current) == certs.public_key_der(key):
            _promote(sm, params.secret_name, version_id)  # a crash may have come between import and promote
            return _finish_imported(ctx, acm, params, current, before, secret_arn, version_id)
    else:
        key = certs.generate_key(params.key_type)
        key_pem = certs.key_pem(key)
        ctx.redact(key_pem)
        secret_arn = ""

    ca = _load_ca(ctx, sm, params.ca_secret) if params.ca_secret else None
    issued = certs.issue_code_signing_cert(
        key, params.common_name or _common_name(current), params.validity_days, ca
    )
    if stored is None:
        secret_arn = _store_key(sm, params.secret_name, key_pem, version_id, ctx)

    kwargs: dict[str, Any] = {
        "CertificateArn": params.certificate_arn,
        "Certificate": issued.certificate_pem.encode("ascii"),
        "PrivateKey": key_pem.encode("ascii"),
    }
    if issued.chain_pem:
        kwargs["CertificateChain"] = issued.chain_pem.encode("ascii")
    with aws_call("acm", "ImportCertificate"):
        acm.import_certificate(**kwargs)
    _promote(sm, params.secret_name, version_id)
    _audit_tags(ctx, acm, params.certificate_arn, version_id, current_serial)
    ctx.record(
        "aws.acm.certificate_rotated",
        _rotated_event(params, current_serial, issued.serial, issued.fingerprint_sha256, version_id),
    )
    issuer = (
        ca.certificate.subject.rfc4514_string() if ca else f"CN={params.common_name or _common_name(current)}"
    )
    return RotateCertificateResult(
        certificate_arn=params.certificate_arn,
        old_serial=current_serial,
        old_fingerprint_sha256=current_fp,
        new_serial=issued.serial,
        new_fingerprint_sha256=issued.fingerprint_sha256,
        not_after=issued.not_after,
        secret_arn=secret_arn,
        secret_version_id=version_id,
        issuer=issuer,
        rotated=True,
    )


def _plan(params: RotateCertificateParams, note: str) -> list[PlannedOperation]:
    ops = []
    if params.ca_secret:
        ops.append(
            PlannedOperation(
                service="secretsmanager",
                operation="GetSecretValue",
                account=params.account,
                region=params.region,
                resources=[params.ca_secret],
                note="read the issuing CA",
            )
        )
    ops += [
        PlannedOperation(
            service="secretsmanager",
            operation="PutSecretValue",
            account=params.account,
            region=params.region,
            resources=[params.secret_name],
            note="new private key (never shown)",
        ),
        PlannedOperation(
            service="acm",
            operation="ImportCertificate",
            account=params.account,
            region=params.region,
            resources=[params.certificate_arn],
            note=note,
        ),
        PlannedOperation(
            service="secretsmanager",
            operation="UpdateSecretVersionStage",
            account=params.account,
            region=params.region,
            resources=[params.secret_name],
            note="new key becomes AWSCURRENT once imported",
        ),
    ]
    return ops


def _describe(ctx: ActionContext, params: RotateCertificateParams) -> list[PlannedOperation]:
    acm = clients_for(ctx, params.account, region_of(ctx, params))("acm")
    current = _current_cert(acm, params.certificate_arn)
    serial, _, not_after = certs.cert_facts(current)
    signer = f"CA from {params.ca_secret}" if params.ca_secret else "self-signed"
    return _plan(
        params,
        f"re-import at the same ARN, replacing serial {serial} (expires {not_after:%Y-%m-%d}); "
        f"new {params.key_type} key, {params.validity_days} days, {signer}",
    )


def _describe_blind(ctx: ActionContext, params: RotateCertificateParams) -> list[PlannedOperation]:
    return _plan(params, "re-import at the same ARN")


ROTATE: ActionSpec[RotateCertificateParams, RotateCertificateResult] = ActionSpec(
    name="aws.acm.rotate_certificate",
    summary="Re-import an ACM certificate at the same ARN with a new key (kept in Secrets Manager).",
    params=RotateCertificateParams,
    result=RotateCertificateResult,
    run=_rotate,
    mutating=True,
    idempotent=True,
    describe=safe_describe(_describe, _describe_blind),
)
