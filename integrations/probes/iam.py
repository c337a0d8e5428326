"""IAM probes: CI keys of affected services are Inactive; keys of unaffected services untouched.

Must not touch: any mutating IAM call (read-only: ListAccessKeys).
"""

from __future__ import annotations

from typing import Any

from integrations.aws.iam import list_key_statuses
from integrations.probes.base import Probe, ProbeContext, ProbeResult, ServicesParams, clients, services


def _statuses(ctx: ProbeContext, svcs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["name"]: {"account": s["account"], "user": s["ci_user"],
                        "keys": list_key_statuses(clients(ctx, s["account"])("iam"), s["ci_user"])}
            for s in svcs}


def ci_keys_inactive(params: Any, ctx: ProbeContext, name: str) -> ProbeResult:
    seen = _statuses(ctx, services(ctx, affected=True, names=params.services))
    bad = [f"{n} in account {o['account']}: {k} still {st}" for n, o in seen.items()
           for k, st in sorted(o["keys"].items()) if st != "Inactive"]
    bad += [f"{n} in account {o['account']}: no access keys" for n, o in seen.items() if not o["keys"]]
    return ProbeResult(name, not bad and bool(seen), seen, "every CI access key of an affected service is Inactive",
                       "; ".join(bad) or ("ok" if seen else "no affected service in the fleet"))


def keys_untouched(params: Any, ctx: ProbeContext, name: str) -> ProbeResult:
    seen = _statuses(ctx, services(ctx, affected=False, names=params.services))
    before = ctx.before.get(name)
    bad: list[str] = []
    for n, o in seen.items():
        was = (before or {}).get(n, {}).get("keys") if isinstance(before, dict) else None
        if was is not None:
            if was != o["keys"]:
                bad.append(f"{n} in account {o['account']}: keys changed {was} -> {o['keys']}")
        else:
            bad += [f"{n} in account {o['account']}: {k} is {st}" for k, st in sorted(o["keys"].items())
                    if st != "Active"]
    return ProbeResult(name, not bad, seen, "no access key of an unaffected service changed (all Active)",
                       "; ".join(bad) or "ok")


PROBES = [
    Probe("iam.ci_keys_inactive", "every CI access key of an affected service is Inactive", ServicesParams,
          ci_keys_inactive),
    Probe("iam.keys_untouched", "no access key of an unaffected service changed (same as before, else all Active)",
          ServicesParams, keys_untouched),
]
