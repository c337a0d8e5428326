"""A generated sandbox fleet: N accounts x M services, K of them hit by MAL-2026-2307.

Owns: the ``grid:<N>x<M>:<affected>`` fleet variant — parsing it (``parse_grid``), the names it
generates (``grid_accounts``, ``grid_services``: account ``4000000000NN``, service
``svc-<account#>-<service#>``, both 1-based and zero-padded), and seeding it (``seed_grid``).
``<affected>`` is a count (the first K services taken round-robin across accounts, so they are
spread over as many accounts as possible) or ``+``-joined service names.

Every service gets a CI user in its account (affected: 2 keys; unaffected: 1) and a lockfile:
affected services the real stx-defi-dashboard lockfile (axios 1.14.1 -> plain-crypto-js), the
others the web-dashboard lockfile (axios 1.14.0 exactly). Affected services also get what the
flagship runbook contains: a code-signing certificate in ACM issued by the account's sandbox CA
(``stanch/sandbox/ca`` in every account with an affected service), its key in
``<service>/signing-key``, a versioned release bucket ``<service>-releases`` with
``release/latest.json``, an audience ``<service>-users`` (verified SES sender, two addresses,
a Slack channel) and a CI install inside the malicious window.

Must not touch: ``flows``, ``prefect``. Secret values live only in moto.
"""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from integrations.aws import certs
from integrations.aws.session import AccountClients
from integrations.inventory.model import Audience, DeployTarget, InstallRecord, Inventory, Service

__all__ = ["GRID_LIMITS", "GridSpec", "grid_accounts", "grid_services", "grid_variant", "parse_grid", "seed_grid"]

GRID_LIMITS = {"accounts": 20, "services_per_account": 10, "services": 100}
_GRID = re.compile(r"^grid:(\d+)x(\d+):([A-Za-z0-9+_-]+)$")
DATA = Path(__file__).parent / "data"
CA_SECRET = "stanch/sandbox/ca"
RELEASE_KEY = "release/latest.json"


class GridSpec:
    """A parsed ``grid:`` variant (validated against ``GRID_LIMITS``)."""

    def __init__(self, accounts: int, per_account: int, affected: int | list[str]) -> None:
        if not 1 <= accounts <= GRID_LIMITS["accounts"]:
            raise ValueError(f"grid fleet: 1 to {GRID_LIMITS['accounts']} accounts, not {accounts}")
        if not 1 <= per_account <= GRID_LIMITS["services_per_account"]:
            raise ValueError(f"grid fleet: 1 to {GRID_LIMITS['services_per_account']} services per account, "
                             f"not {per_account}")
        self.accounts, self.per_account = accounts, per_account
        names = grid_services(accounts, per_account)
        if isinstance(affected, int):
            if not 0 <= affected <= len(names):
                raise ValueError(f"grid fleet: {affected} affected services of {len(names)}")
            self.affected = _round_robin(accounts, per_account)[:affected]
        else:
            unknown = [n for n in affected if n not in names]
            if unknown:
                raise ValueError(f"grid fleet has no service {', '.join(unknown)} (services are "
                                 f"{names[0]} … {names[-1]})")
            self.affected = list(dict.fromkeys(affected))

    @property
    def variant(self) -> str:
        return grid_variant(self.accounts, self.per_account, self.affected)


def grid_accounts(n: int) -> list[str]:
    return [f"{400000000000 + i}" for i in range(1, n + 1)]


def grid_services(n: int, m: int) -> list[str]:
    return [f"svc-{a:02d}-{s:02d}" for a in range(1, n + 1) for s in range(1, m + 1)]


def _round_robin(n: int, m: int) -> list[str]:
    return [f"svc-{a:02d}-{s:02d}" for s in range(1, m + 1) for a in range(1, n + 1)]


def grid_variant(accounts: int, per_account: int, affected: int | list[str]) -> str:
    tail = str(affected) if isinstance(affected, int) else "+".join(affected)
    return f"grid:{accounts}x{per_account}:{tail}"


def parse_grid(variant: str) -> GridSpec | None:
    """The ``GridSpec`` of a ``grid:`` variant, None for any other variant; ValueError if malformed."""
    if not variant.startswith("grid:"):
        return None
    m = _GRID.match(variant)
    if m is None:
        raise ValueError(f"grid fleet variant {variant!r} is not grid:<accounts>x<services>:<affected>")
    tail = m.group(3)
    affected: int | list[str] = int(tail) if tail.isdigit() else tail.split("+")
    return GridSpec(int(m.group(1)), int(m.group(2)), affected)


def _copy(src: str, dest_dir: Path, name: str) -> None:
    dest_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DATA / src, dest_dir / name)
    (dest_dir / name).chmod(0o644)


def _signing(clients: AccountClients, service: str, ca: Any) -> tuple[str, str]:
    sm, acm = clients("secretsmanager"), clients("acm")
    key = certs.generate_key("ec-p256")
    pem = certs.key_pem(key)
    issued = certs.issue_code_signing_cert(key, f"{service} Code Signing (sandbox)", 365, ca)
    secret = f"{service}/signing-key"
    sm.create_secret(Name=secret, SecretString=pem, Description=f"{service} code-signing key")
    arn = acm.import_certificate(
        Certificate=issued.certificate_pem.encode(), PrivateKey=pem.encode(),
        CertificateChain=(issued.chain_pem or "").encode(),
        Tags=[{"Key": "service", "Value": service}, {"Key": "purpose", "Value": "code-signing"}])["CertificateArn"]
    return str(arn), secret


def _release(clients: AccountClients, bucket: str) -> None:
    import json

    s3 = clients("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    manifest = {"schema": 1, "version": "4.2.0", "min_supported_version": "4.0.0", "pinned": {"axios": "^1.6.0"},
                "notes": "Generated sandbox service.", "incident": None, "published_at": "2026-03-30T22:10:00+00:00"}
    s3.put_object(Bucket=bucket, Key=RELEASE_KEY, Body=(json.dumps(manifest, indent=2) + "\n").encode(),
                  ContentType="application/json")


def seed_grid(spec: GridSpec, client_for: Any, work: Path, region: str) -> dict[str, Any]:
    """Seed the grid through ``client_for(account) -> AccountClients``; returns the inventory and
    what ``SandboxFleet`` needs (``accounts``, ``services`` as dicts, ``audiences``, ``ca_account``)."""
    accounts = grid_accounts(spec.accounts)
    services: list[Service] = []
    seeded: dict[str, dict[str, Any]] = {}
    audiences: dict[str, Audience] = {}
    cas: dict[str, Any] = {}
    for a, account in enumerate(accounts, start=1):
        clients = client_for(account)
        for s in range(1, spec.per_account + 1):
            name = f"svc-{a:02d}-{s:02d}"
            hit = name in spec.affected
            folder = work / "services" / name
            lock = "stx-defi-dashboard" if hit else "web-dashboard"
            _copy(f"{lock}.package-lock.json", folder, "package-lock.json")
            _copy(f"{lock}.package.json", folder, "package.json")
            iam = clients("iam")
            user = f"ci-{name}"
            iam.create_user(UserName=user, Path="/ci/", Tags=[{"Key": "stanch:role", "Value": "ci"}])
            keys = [iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"] for _ in range(2 if hit else 1)]
            svc: dict[str, Any] = {"name": name, "account": account, "ci_user": user, "access_key_ids": keys,
                                   "lockfiles": [str(folder / "package-lock.json")], "affected": hit,
                                   "app_version": "4.2.0"}
            extra: dict[str, Any] = {}
            if hit:
                if account not in cas:
                    cas[account] = certs.make_ca()
                    clients("secretsmanager").create_secret(
                        Name=CA_SECRET, SecretString=cas[account].to_secret_string(), Description="stanch sandbox CA")
                arn, secret = _signing(clients, name, cas[account])
                bucket = f"{name}-releases"
                _release(clients, bucket)
                audience = f"{name}-users"
                sender = f"security@{name}.example"
                clients("ses").verify_email_identity(EmailAddress=sender)
                audiences[audience] = Audience(sender=sender, emails=[f"ana@{name}.example", f"bo@{name}.example"],
                                               slack_channel=f"#{audience}")
                svc |= {"certificate_arn": arn, "signing_secret": secret, "release_bucket": bucket,
                        "release_key": RELEASE_KEY, "audience": audience}
                extra = {"signing_certificate": arn, "signing_secret": secret, "audience": audience,
                         "deploy_target": DeployTarget(kind="s3-release", bucket=bucket, key=RELEASE_KEY),
                         "installs": [InstallRecord(at=datetime(2026, 3, 31, 1, 0, tzinfo=UTC), ref="main@94e9754",
                                                    lockfile=f"services/{name}/package-lock.json")]}
            services.append(Service(name=name, account=account, region=region, ecosystem="npm",
                                    lockfiles=[f"services/{name}/package-lock.json"],
                                    manifests=[f"services/{name}/package.json"], ci_user=user,
                                    app_version="4.2.0", **extra))
            seeded[name] = svc
    ca_account = next(iter(cas), accounts[0])
    return {"inventory": Inventory(services=services, audiences=audiences), "accounts": accounts,
            "services": seeded, "audiences": audiences, "ca_account": ca_account}
