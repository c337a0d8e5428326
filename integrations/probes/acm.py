"""ACM probe: the signing certificate has a new serial at the same ARN.

Run it as a before-probe too: its before-observation (serial per service) is the baseline.
Must not touch: any mutating ACM call (read-only: GetCertificate).
"""

from __future__ import annotations

from typing import Any

from cryptography import x509

from integrations.aws import certs
from integrations.probes.base import Probe, ProbeContext, ProbeResult, ServicesParams, clients, services


def certificate_facts(ctx: ProbeContext, account: str, arn: str) -> dict[str, Any]:
    pem = clients(ctx, account)("acm").get_certificate(CertificateArn=arn)["Certificate"]
    cert = x509.load_pem_x509_certificate(pem.encode())
    serial, fingerprint, _ = certs.cert_facts(cert)
    return {"serial": str(serial), "fingerprint_sha256": fingerprint}


def certificate_reissued(params: Any, ctx: ProbeContext, name: str) -> ProbeResult:
    observed: dict[str, Any] = {}
    bad: list[str] = []
    before = ctx.before.get(name) if isinstance(ctx.before.get(name), dict) else None
    for s in services(ctx, affected=True, names=params.services):
        arn = s.get("certificate_arn")
        if not arn:
            continue
        facts = certificate_facts(ctx, s["account"], arn)
        was = (before or {}).get(s["name"], {}).get("serial")
        observed[s["name"]] = {"account": s["account"], "arn": arn, "serial": facts["serial"], "before": was}
        if before is not None and (was is None or facts["serial"] == was):
            bad.append(f"{s['name']} in account {s['account']}: serial unchanged ({facts['serial']}) at {arn}")
    detail = "; ".join(bad) or ("ok" if before is not None else "baseline recorded (no before-observation)")
    return ProbeResult(name, not bad, observed, "a new certificate serial at the same ARN for every affected service",
                       detail)


PROBES = [
    Probe("acm.certificate_reissued", "a new certificate serial at the same ARN for every affected service "
          "(compares with its before-observation)", ServicesParams, certificate_reissued, needs_before=True),
]
