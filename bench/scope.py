"""Benchmark of ``stanch scope``: 200 services x ~1,500-package lockfiles x 6 advisories.

Generates a synthetic fleet in a temp dir (npm lockfile v3 per service, realistic scoped and
unscoped names, nested ``node_modules`` duplicates, a dependency graph, a few services pinning the
bad axios / plain-crypto-js / ua-parser-js releases, an install history), then times
``scope_many`` against the six bundled advisories. Figures are printed in seconds and as ratios
against a baseline measured in the same process: ``json.load`` of every lockfile.

    .venv/bin/python bench/scope.py [--services 200] [--packages 1500] [--repeat 3]

Owns: nothing but this measurement. Must not touch: the network, ``prefect``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from integrations.inventory import scope_many
from integrations.inventory.match import _load_fleet
from integrations.inventory.model import load_inventory

ADVISORIES = [
    "MAL-2026-2307",
    "MAL-2026-2306",
    "MAL-2025-47141",
    "GHSA-pjwm-rvh2-c87w",
    "GHSA-mh6f-8j2x-4483",
    "GHSA-mrrh-fwg8-r2c3",
]

_WORDS = (  # noqa: SIM905
    "core util http react lodash parse stream date color crypto json yaml path glob fs ansi chalk "
    "debug event emitter buffer string array object promise async cache config dom css style "
    "loader plugin babel eslint postcss webpack rollup vite jest mocha types node tslib uuid "
    "semver minimatch mime form data proxy agent socket url query sort merge deep clone"
).split()
_SCOPES = ("@babel", "@types", "@aws-sdk", "@smithy", "@radix-ui", "@emotion", "@jest", "@octokit")


def _names(rng: random.Random, n: int) -> list[str]:
    out: set[str] = set()
    while len(out) < n:
        base = "-".join(rng.sample(_WORDS, rng.choice((1, 2, 2, 3))))
        out.add(f"{rng.choice(_SCOPES)}/{base}" if rng.random() < 0.25 else base)
    return sorted(out)


def _version(rng: random.Random) -> str:
    v = f"{rng.randint(0, 12)}.{rng.randint(0, 30)}.{rng.randint(0, 40)}"
    return v + (f"-beta.{rng.randint(0, 5)}" if rng.random() < 0.02 else "")


def _lockfile(rng: random.Random, name: str, pool: list[str], n: int, hits: dict[str, str]) -> dict:
    chosen = rng.sample(pool, n - len(hits))
    packages: dict[str, dict] = {}
    keys: list[str] = []
    for i, pkg in enumerate(chosen):
        key = f"node_modules/{pkg}"
        if i % 15 == 0 and keys:  # nested duplicate under another package
            key = f"{rng.choice(keys)}/node_modules/{pkg}"
        keys.append(key)
        packages[key] = {
            "version": _version(rng),
            "resolved": f"https://registry.npmjs.org/{pkg}/-/{pkg.split('/')[-1]}-1.0.0.tgz",
            "integrity": "sha512-" + "A" * 86 + "==",
            "license": "MIT",
        }
    for pkg, ver in hits.items():
        key = f"node_modules/{pkg}"
        keys.append(key)
        packages[key] = {"version": ver, "license": "MIT"}
    top = [k[len("node_modules/") :] for k in keys if k.count("node_modules/") == 1]
    for key in keys:
        deps = rng.sample(top, min(len(top), rng.randint(0, 4)))
        deps = [d for d in deps if f"node_modules/{d}" != key]
        if deps:
            packages[key]["dependencies"] = {d: "^" + packages[f"node_modules/{d}"]["version"] for d in deps}
    if "plain-crypto-js" in hits and "axios" in hits:
        packages["node_modules/axios"]["dependencies"] = {"plain-crypto-js": "^4.2.1"}
    direct = rng.sample(top, 30) + [h for h in hits if h != "plain-crypto-js"]
    root = {
        "name": name,
        "version": "1.0.0",
        "dependencies": {d: "^" + packages[f"node_modules/{d}"]["version"] for d in direct},
    }
    if "axios" in hits:
        root["dependencies"]["axios"] = "^1.6.0"
    return {
        "name": name,
        "version": "1.0.0",
        "lockfileVersion": 3,
        "requires": True,
        "packages": {"": root, **packages},
    }


def generate(root: Path, services: int, packages: int, seed: int = 7) -> tuple[Path, list[Path]]:
    rng = random.Random(seed)
    pool = _names(rng, packages * 3)
    lockfiles: list[Path] = []
    inv_services = []
    for i in range(services):
        name = f"svc-{i:03d}"
        hits: dict[str, str] = {}
        if i % 40 == 0:
            hits = {"axios": "1.14.1", "plain-crypto-js": "4.2.1"}
        elif i % 40 == 1:
            hits = {"axios": "1.14.0"}
        elif i % 50 == 2:
            hits = {"ua-parser-js": "0.7.29"}
        elif i % 70 == 3:
            hits = {"@ctrl/tinycolor": "4.1.1"}
        data = _lockfile(rng, name, pool, packages, hits)
        lf = root / name / "package-lock.json"
        lf.parent.mkdir(parents=True)
        lf.write_text(json.dumps(data, indent=2))
        lockfiles.append(lf)
        inv_services.append(
            {
                "name": name,
                "account": f"{100000000000 + i}",
                "lockfiles": [f"{name}/package-lock.json"],
                "ci_user": f"ci-{name}",
                "installs": [{"at": "2026-03-31T01:00:00Z"}] if i % 2 == 0 else [],
            }
        )
    inv = root / "inventory.json.yaml"
    inv.write_text(json.dumps({"services": inv_services}))  # JSON is YAML
    return inv, lockfiles


def _best(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=200)
    ap.add_argument("--packages", type=int, default=1500)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    live_from = datetime(2026, 3, 31, 0, 21, tzinfo=UTC)
    live_until = datetime(2026, 3, 31, 3, 15, tzinfo=UTC)
    with tempfile.TemporaryDirectory(prefix="stanch-bench-scope-") as tmp:
        inv, lockfiles = generate(Path(tmp), args.services, args.packages)
        size_mb = sum(p.stat().st_size for p in lockfiles) / 1e6

        def baseline() -> None:
            for p in lockfiles:
                with p.open("rb") as fh:
                    json.load(fh)

        results: list = []

        def full() -> None:
            results[:] = scope_many(ADVISORIES, inv, live_from, live_until)

        def load_only() -> None:
            _load_fleet(load_inventory(inv))

        t_base = _best(baseline, args.repeat)
        t_load = _best(load_only, args.repeat)
        t_full = _best(full, args.repeat)
        t_one = _best(lambda: scope_many(ADVISORIES[:1], inv, live_from, live_until), args.repeat)
        pkgs = results[0].scanned["packages"]
        n_adv = len(ADVISORIES)
        print(f"fleet: {args.services} services, {pkgs} packages, {size_mb:.1f} MB, {n_adv} advisories")
        print(f"baseline json.load of all lockfiles : {t_base:6.3f} s  (1.00x)")
        print(f"parse + index fleet (no matching)   : {t_load:6.3f} s  ({t_load / t_base:.2f}x)")
        print(f"scope, 1 advisory                   : {t_one:6.3f} s  ({t_one / t_base:.2f}x)")
        print(f"scope, {n_adv} advisories                  : {t_full:6.3f} s  ({t_full / t_base:.2f}x)  (< 2 s)")
        for r in results:
            print(f"  {r.advisory.id:22s} affected={len(r.affected):3d} confirm={len(r.needs_confirmation):3d}")
        return 0 if t_full < 2.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
