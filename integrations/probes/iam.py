"""IAM probes: CI keys of affected services are Inactive; keys of unaffected services untouched.

Must not touch: any mutating IAM call (read-only: ListAccessKeys).
"""

from __future__ import annotations

from typing import Any, Literal

from integrations.aws.iam import list_key_statuses
from integrations.probes.base import (
    Probe,
    ProbeContext,
    ProbeParams,
    ProbeResult,
    ServicesParams,
    clients,
    services,
)


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


class LeakedKeyParams(ProbeParams):
    expect: Literal["inactive", "deleted", "inactive-or-deleted"] = "inactive-or-deleted"
    owner_other_keys: Literal["untouched", "rotated", "any"] = "any"


def leaked_key_contained(params: Any, ctx: ProbeContext, name: str) -> ProbeResult:
    """The fleet's leaked key (``leaked_access_key_id``, leaked-key fleet) is Inactive or deleted as
    ``expect`` says; every key of the sandbox's other IAM users is still Active; and the owner's
    other keys are ``untouched`` (still Active: e.g. nobody approved the rotation), ``rotated`` (none
    of the original ones is Active any more and a new one is), or ``any``."""
    fleet = ctx.incident.get("fleet") or {}
    leaked, users = fleet.get("leaked_access_key_id"), dict(fleet.get("users") or {})
    if not leaked or not users:
        return ProbeResult(name, False, None, "a leaked key in the fleet", "the drill fleet has no leaked key "
                           "(use fleet variant leaked-key)")
    seen = {u: {"account": o["account"], "keys": list_key_statuses(clients(ctx, o["account"])("iam"), u)}
            for u, o in users.items()}
    owner = next(u for u, o in users.items() if leaked in o["access_key_ids"])
    status = seen[owner]["keys"].get(leaked, "deleted")
    bad: list[str] = []
    if status == "Active" or (params.expect == "inactive" and status != "Inactive") or (
            params.expect == "deleted" and status != "deleted"):
        bad.append(f"leaked key {leaked} of {owner} in account {users[owner]['account']} is {status}, "
                   f"expected {params.expect}")
    for u, o in seen.items():
        if u == owner:
            continue
        changed = {k: o["keys"].get(k, "deleted") for k in users[u]["access_key_ids"] if o["keys"].get(k) != "Active"}
        if changed:
            bad.append(f"{u} in account {o['account']} (not the leaked key's user): {changed}")
    originals = [k for k in users[owner]["access_key_ids"] if k != leaked]
    now = seen[owner]["keys"]
    if params.owner_other_keys == "untouched" and any(now.get(k) != "Active" for k in originals):
        bad.append(f"{owner}'s other keys changed: {({k: now.get(k, 'deleted') for k in originals})}")
    if params.owner_other_keys == "rotated" and (
            any(now.get(k) == "Active" for k in originals)
            or not any(st == "Active" for k, st in now.items() if k not in users[owner]["access_key_ids"])):
        bad.append(f"{owner}'s other keys were not rotated: {now}")
    observed = {"leaked": {"key": leaked, "user": owner, "status": status}, "users": seen}
    return ProbeResult(name, not bad, observed, f"the leaked key is {params.expect}, other users' keys Active, "
                       f"the owner's other keys {params.owner_other_keys}", "; ".join(bad) or "ok")


PROBES = [
    Probe("iam.leaked_key_contained", "the fleet's leaked access key is Inactive or deleted (expect:), and no "
          "other IAM user key changed (others: untouched)", LeakedKeyParams, leaked_key_contained),
    Probe("iam.ci_keys_inactive", "every CI access key of an affected service is Inactive", ServicesParams,
          ci_keys_inactive),
    Probe("iam.keys_untouched", "no access key of an unaffected service changed (same as before, else all Active)",
          ServicesParams, keys_untouched),
]
