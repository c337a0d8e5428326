"""S3 probe: each affected service's release manifest pins the safe versions.

Must not touch: any mutating S3 call (read-only: GetObject).
"""

from __future__ import annotations

from typing import Any

from integrations.aws.s3 import read_manifest
from integrations.probes.base import Probe, ProbeContext, ProbeParams, ProbeResult, clients, services


class ManifestParams(ProbeParams):
    #: service -> {package: safe version}, e.g. {desktop-app: {axios: 1.14.0}}
    expect: dict[str, dict[str, str]]
    #: packages that must be gone from ``pinned`` (e.g. plain-crypto-js)
    absent: list[str] = []


def manifest_pins_safe_version(params: Any, ctx: ProbeContext, name: str) -> ProbeResult:
    observed: dict[str, Any] = {}
    bad: list[str] = []
    for s in services(ctx, affected=None, names=sorted(params.expect)):
        if not s.get("release_bucket"):
            bad.append(f"{s['name']}: no release manifest in the fleet")
            continue
        key = s.get("release_key") or "release/latest.json"
        found = read_manifest(clients(ctx, s["account"])("s3"), s["release_bucket"], key)
        pinned = dict((found[0] if found else {}).get("pinned") or {})
        observed[s["name"]] = {"account": s["account"], "version": (found[0] if found else {}).get("version"),
                               "pinned": pinned}
        for pkg, version in sorted(params.expect[s["name"]].items()):
            if pinned.get(pkg) != version:
                bad.append(f"{s['name']} in account {s['account']}: {pkg} pinned to {pinned.get(pkg)!r}, "
                           f"expected {version!r}")
        bad += [f"{s['name']}: {pkg} still in the manifest" for pkg in params.absent if pkg in pinned]
    return ProbeResult(name, not bad, observed, "the release manifest pins the safe versions", "; ".join(bad) or "ok")


PROBES = [
    Probe("s3.manifest_pins_safe_version", "each named service's release manifest pins the safe versions "
          "(with: {expect: {service: {package: version}}})", ManifestParams, manifest_pins_safe_version),
]
