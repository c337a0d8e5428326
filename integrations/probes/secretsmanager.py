"""Secrets Manager probe: the signing-key secret matches the certificate at the ACM ARN.

Compares public keys only; the secret's value never leaves this function (not in ``observed``).
Must not touch: any mutating Secrets Manager or ACM call.
"""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography import x509

from integrations.aws import certs
from integrations.probes.base import Probe, ProbeContext, ProbeResult, ServicesParams, clients, services


def secret_matches_certificate(params: Any, ctx: ProbeContext, name: str) -> ProbeResult:
    observed: dict[str, Any] = {}
    bad: list[str] = []
    for s in services(ctx, affected=True, names=params.services):
        if not (s.get("certificate_arn") and s.get("signing_secret")):
            continue
        c = clients(ctx, s["account"])
        pem = c("acm").get_certificate(CertificateArn=s["certificate_arn"])["Certificate"]
        cert_key = certs.public_key_der(x509.load_pem_x509_certificate(pem.encode()))
        secret = c("secretsmanager").get_secret_value(
            SecretId=s["signing_secret"], VersionStage="AWSCURRENT")["SecretString"]
        key_pub = certs.public_key_der(certs.load_key(secret))
        match = cert_key == key_pub
        observed[s["name"]] = {"account": s["account"], "certificate_key_sha256": hashlib.sha256(cert_key).hexdigest(),
                               "secret_key_sha256": hashlib.sha256(key_pub).hexdigest(), "match": match}
        if not match:
            bad.append(f"{s['name']} in account {s['account']}: {s['signing_secret']} does not hold the key of "
                       f"the certificate at {s['certificate_arn']}")
    return ProbeResult(name, not bad and bool(observed), observed,
                       "the signing-key secret holds the private key of the certificate in ACM",
                       "; ".join(bad) or ("ok" if observed else "no affected service with a signing certificate"))


PROBES = [
    Probe("secretsmanager.secret_matches_certificate",
          "the signing-key secret holds the private key of the certificate in ACM", ServicesParams,
          secret_matches_certificate),
]
