"""SES probe: each audience address of an affected service got exactly one e-mail; nobody else any.

Reads what moto's SES accepted (``integrations.sandbox.observe.sent_emails``), so it is a
sandbox-only probe. Observed: {address: e-mails received} for every expected address (0 included)
and anyone else who got one. Must not touch: any sending API.
"""

from __future__ import annotations

from typing import Any

from integrations.probes.base import Probe, ProbeContext, ProbeResult, ServicesParams, audiences, services, settings_of
from integrations.sandbox.observe import sent_emails


def one_email_per_address(params: Any, ctx: ProbeContext, name: str) -> ProbeResult:
    counts: dict[str, int] = {}
    endpoint = settings_of(ctx).aws_endpoint_url or ""
    for m in sent_emails(endpoint):
        for to in m.to:
            counts[to] = counts.get(to, 0) + 1
    table = audiences(ctx)
    wanted = {e for s in services(ctx, affected=True, names=params.services) if s.get("audience")
              for e in table.get(s["audience"], {}).get("emails", [])}
    # observed: every expected address with its count (0 included), and anyone else who got one
    observed = {a: counts.get(a, 0) for a in sorted(wanted | set(counts))}
    bad = {a: n for a, n in observed.items() if n != (1 if a in wanted else 0)}
    return ProbeResult(name, not bad and bool(wanted), observed,
                       "each affected audience address got exactly one e-mail, nobody else any",
                       "; ".join(f"{a}: {n} e-mails" for a, n in bad.items())
                       or ("ok" if wanted else "no audience address to expect"))


PROBES = [
    Probe("ses.one_email_per_address", "each affected audience address got exactly one e-mail, nobody else any",
          ServicesParams, one_email_per_address),
]
