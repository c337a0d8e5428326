"""Read-only views of sandbox state, for tests, drill scoring and the demo.

Owns: ``access_key_statuses``, ``sent_emails``, ``release_manifest``, ``certificate_facts`` and
``secret_value`` — each answers one question about what containment did, over HTTP, so it works
against an in-process ``MotoServer`` and a detached ``stanch sandbox up`` alike.

``sent_emails`` reads moto's ``GET /moto-api/data.json`` (SES ``Message`` models). moto does not
record the account of a sent message there, so the list spans all accounts. That endpoint fails
with HTTP 500 if Lambda functions exist without Docker; the sandbox creates none.

``sns_notifications`` reads moto's SNS backend in this process (moto records published messages
but serves them over no HTTP route): it works for an in-process ``Sandbox``/``MotoServer`` only.

Must not touch: ``flows``, ``prefect``.
"""

from __future__ import annotations

import json
from typing import Any

import urllib3
from cryptography import x509
from pydantic import BaseModel, ConfigDict

from integrations.aws import certs
from integrations.aws.iam import list_key_statuses
from integrations.aws.s3 import read_manifest
from integrations.aws.session import clients_for
from integrations.settings import StanchSettings

__all__ = [
    "SentEmail",
    "access_key_statuses",
    "certificate_facts",
    "release_manifest",
    "secret_value",
    "sent_emails",
    "sns_notifications",
]

_http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=30))


class SentEmail(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    source: str
    subject: str | None = None
    body: str | None = None
    to: list[str]


def _clients(endpoint: str, account: str, region: str = "us-east-1") -> Any:
    return clients_for(StanchSettings(aws_endpoint_url=endpoint, aws_region=region), account, region)


def access_key_statuses(endpoint: str, account: str, user: str) -> dict[str, str]:
    """``{access_key_id: "Active"|"Inactive"}`` of an IAM user in the sandbox."""
    return list_key_statuses(_clients(endpoint, account)("iam"), user)


def sent_emails(endpoint: str) -> list[SentEmail]:
    """Every e-mail SES accepted since the last reset (all accounts and regions)."""
    resp = _http.request("GET", f"{endpoint.rstrip('/')}/moto-api/data.json")
    if resp.status != 200:
        raise RuntimeError(f"moto data.json: HTTP {resp.status}")
    messages = json.loads(resp.data).get("ses", {}).get("Message", [])
    out = []
    for m in messages:
        dest = m.get("destinations") or {}
        to = (
            list(dest.get("ToAddresses", []))
            + list(dest.get("CcAddresses", []))
            + list(dest.get("BccAddresses", []))
        )
        out.append(
            SentEmail(id=m["id"], source=m["source"], subject=m.get("subject"), body=m.get("body"), to=to)
        )
    return out


def release_manifest(
    endpoint: str, account: str, bucket: str, key: str = "release/latest.json"
) -> dict[str, Any]:
    """The current release manifest (plus ``_version_id`` and ``_sha256``)."""
    found = read_manifest(_clients(endpoint, account)("s3"), bucket, key)
    if found is None:
        raise KeyError(f"s3://{bucket}/{key}")
    manifest, version_id, sha = found
    return {**manifest, "_version_id": version_id, "_sha256": sha}


def certificate_facts(endpoint: str, account: str, arn: str, region: str = "us-east-1") -> dict[str, Any]:
    """Serial, fingerprint, issuer, notAfter and EKUs of the certificate currently at ``arn``."""
    pem = _clients(endpoint, account, region)("acm").get_certificate(CertificateArn=arn)["Certificate"]
    cert = x509.load_pem_x509_certificate(pem.encode())
    serial, fingerprint, not_after = certs.cert_facts(cert)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    return {
        "serial": serial,
        "fingerprint_sha256": fingerprint,
        "not_after": not_after,
        "issuer": cert.issuer.rfc4514_string(),
        "subject": cert.subject.rfc4514_string(),
        "extended_key_usage": [oid.dotted_string for oid in eku],
        "public_key_der": certs.public_key_der(cert),
    }


def secret_value(endpoint: str, account: str, name: str, region: str = "us-east-1") -> dict[str, Any]:
    """``GetSecretValue`` of a sandbox secret (tests only: the value is a secret)."""
    sm = _clients(endpoint, account, region)("secretsmanager")
    resp = sm.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")  # moto: by stage, not its default
    return {"arn": resp["ARN"], "version_id": resp["VersionId"], "value": resp.get("SecretString")}


def sns_notifications(account: str, topic_arn: str, region: str = "us-east-1") -> list[dict[str, Any]]:
    """``[{message_id, subject, message}]`` published to ``topic_arn`` (in-process moto only)."""
    from moto.sns.models import sns_backends

    topic = sns_backends[account][region].topics.get(topic_arn)
    if topic is None:
        raise KeyError(topic_arn)
    return [{"message_id": n[0], "message": n[1], "subject": n[2]} for n in topic.sent_notifications]
