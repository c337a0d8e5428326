"""AWS call probe: no mutating call happened twice on the same target, as the sandbox saw it.

``aws.no_duplicate_side_effects`` reads the side-effect counters of the drill's sandbox (0 ms
latency-only fault rules with ``by_target``, ``integrations.sandbox.faults``): per operation, how
many calls on each target (account + identifying parameters: user and key id, certificate ARN,
bucket/key, recipients) got a successful answer from moto. A kill-and-resume drill proves with it
that nothing was done twice, whatever the run's timeline claims. The counters must be in place
before the run: ``COUNTERS`` says which (the drill runner installs the counters of every probe it
will run, ``ProbeRegistry.counters``), and the probe reads back only its own (``label``).

Must not touch: any AWS state (it reads the sandbox's control endpoint ``GET /_fault`` only).
"""

from __future__ import annotations

import json
from typing import Any

import urllib3
from pydantic import Field

from integrations.probes.base import Probe, ProbeContext, ProbeParams, ProbeResult, settings_of

NAME = "aws.no_duplicate_side_effects"
LABEL = f"probe:{NAME}"

#: operation -> SigV4 service: the flagship's side effects that repeat badly
SIDE_EFFECTS: dict[str, str] = {"UpdateAccessKey": "iam", "ImportCertificate": "acm", "PutObject": "s3",
                                "SendEmail": "ses", "PutSecretValue": "secretsmanager"}

_http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=10))


class SideEffectParams(ProbeParams):
    operations: list[str] = Field(default_factory=lambda: list(SIDE_EFFECTS), min_length=1,
                                  description="AWS operations counted (default: the flagship's side effects)")
    at_most: int = Field(default=1, ge=1, description="successful calls allowed per target")


def counters(params: Any) -> list[dict[str, Any]]:
    """The sandbox rules this probe reads: one counter per operation (``/_fault`` bodies)."""
    return [{"action": op, "service": SIDE_EFFECTS.get(op), "status": None, "delay_ms": 0, "by_target": True,
             "label": LABEL} for op in params.operations]


def _rules(ctx: ProbeContext) -> list[dict[str, Any]]:
    endpoint = (settings_of(ctx).aws_endpoint_url or "").rstrip("/")
    if not endpoint:
        raise ValueError("no sandbox endpoint to read call counters from")
    resp = _http.request("GET", f"{endpoint}/_fault")
    if resp.status != 200:
        raise ValueError(f"GET {endpoint}/_fault: HTTP {resp.status}")
    rules: list[dict[str, Any]] = json.loads(resp.data).get("rules", [])
    return rules


def no_duplicate_side_effects(params: Any, ctx: ProbeContext, name: str) -> ProbeResult:
    mine = [r for r in _rules(ctx) if r.get("label") == LABEL]
    observed: dict[str, dict[str, int]] = {}
    for r in mine:
        if r.get("action") in params.operations:
            table = observed.setdefault(str(r["action"]), {})
            for target, n in (r.get("targets") or {}).items():
                table[target] = table.get(target, 0) + int(n)
    missing = [op for op in params.operations if op not in observed]
    bad = [f"{op} {t}: {n} times" for op, table in sorted(observed.items()) for t, n in sorted(table.items())
           if n > params.at_most]
    if missing:
        bad.append(f"no call counter for {', '.join(missing)} in this sandbox (a drill installs them before the run)")
    total = sum(sum(t.values()) for t in observed.values())
    return ProbeResult(name, not bad, {op: dict(sorted(t.items())) for op, t in sorted(observed.items())},
                       f"no {'/'.join(params.operations)} more than {params.at_most}x on the same target",
                       "; ".join(bad) or f"ok: {total} call(s), none repeated on a target")


PROBES = [
    Probe(NAME, "no mutating AWS call (UpdateAccessKey, ImportCertificate, PutObject, SendEmail, PutSecretValue) "
          "succeeded more than once on the same target, as the sandbox counted them", SideEffectParams,
          no_duplicate_side_effects, counters=counters),
]
