"""The seeded sandbox fleet: three accounts, three services, one of them hit by MAL-2026-2307.

Owns: ``seed_fleet(endpoint_url, workdir) -> SandboxFleet``. It creates AWS state through the
same assume-role client factory the actions use (``integrations.aws.session``), so the actions
see exactly this state, copies the services' lockfiles into ``workdir/services/<name>/`` and
writes ``workdir/inventory.yaml`` (paths relative to it).

- ``desktop-app`` (account 222222222222, **affected**): CI user ``ci-desktop-app`` with 2 keys;
  the real stx-defi-dashboard lockfile pinning axios 1.14.1 -> plain-crypto-js 4.2.1; a code-signing
  certificate imported into ACM, issued by the sandbox CA (Secrets Manager ``stanch/sandbox/ca``),
  key in ``desktop-app/signing-key``; release manifest
  ``s3://desktop-app-releases/release/latest.json`` (4.2.0, versioned bucket); audience
  ``desktop-users`` (verified SES sender, 3 e-mails); an install at 2026-03-31T01:00:00Z.
- ``web-dashboard`` (111111111111, unaffected): ``ci-web-dashboard`` with 1 key; lockfile pinning
  axios 1.14.0 exactly; audience ``web-users``.
- ``billing-api`` (333333333333, unaffected): ``ci-billing-api`` with 1 key; hashed pip requirements.

Variant ``two-lines`` (``seed_fleet(..., variant="two-lines")``) adds ``legacy-desktop`` (account
222222222222, **affected** on the other release line): ``ci-legacy-desktop`` with 1 key; a
lockfile pinning axios **0.30.4** under ``^0.30.0``; release manifest
``s3://legacy-desktop-releases/release/latest.json`` (1.9.0); an install at 2026-03-31T01:30:00Z.
A correct run pins desktop-app to axios 1.14.0 and legacy-desktop to 0.30.3.

Variants ``leaked-key``, ``tenants`` and ``ci-action`` add what the runbook library acts on
(``integrations.sandbox.fleet_library``).

Secret access keys and private keys created here are never written anywhere but moto.

Must not touch: ``flows``, ``prefect``.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from integrations.aws import certs
from integrations.aws.session import AccountClients, clients_for
from integrations.inventory.model import Audience, DeployTarget, InstallRecord, Inventory, Service
from integrations.sandbox.fleet_grid import parse_grid, seed_grid
from integrations.sandbox.fleet_library import LIBRARY_VARIANTS, SandboxTenant, SandboxUser, seed_variant
from integrations.settings import StanchSettings

__all__ = [
    "ACCOUNTS",
    "CA_SECRET",
    "REGION",
    "SandboxFleet",
    "SandboxService",
    "seed_fleet",
]

DATA = Path(__file__).parent / "data"
REGION = "us-east-1"
ACCOUNTS = {"web": "111111111111", "desktop": "222222222222", "billing": "333333333333"}
CA_SECRET = "stanch/sandbox/ca"
DESKTOP_RELEASE_BUCKET = "desktop-app-releases"
DESKTOP_RELEASE_KEY = "release/latest.json"
DESKTOP_SIGNING_SECRET = "desktop-app/signing-key"
LEGACY_RELEASE_BUCKET = "legacy-desktop-releases"
VARIANTS = ("default", "two-lines", *LIBRARY_VARIANTS)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SandboxService(_Model):
    name: str
    account: str
    ci_user: str
    access_key_ids: list[str]
    lockfiles: list[str]
    affected: bool
    certificate_arn: str | None = None
    signing_secret: str | None = None
    release_bucket: str | None = None
    release_key: str | None = None
    app_version: str | None = None
    audience: str | None = None


class SandboxFleet(_Model):
    """What ``seed_fleet`` created (ids only, no secrets)."""

    endpoint_url: str
    region: str
    accounts: list[str]
    inventory_path: Path
    services: dict[str, SandboxService]
    audiences: dict[str, Audience]
    ca_secret: str
    ca_account: str
    variant: str = "default"
    users: dict[str, SandboxUser] = {}
    leaked_access_key_id: str | None = None
    tenants: dict[str, SandboxTenant] = {}
    ci_secrets: dict[str, list[str]] = {}

    def service(self, name: str) -> SandboxService:
        return self.services[name]


def _copy(src: str, dest_dir: Path, name: str) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / name
    shutil.copyfile(DATA / src, dest)
    dest.chmod(0o644)
    return dest


def _ci_user(clients: AccountClients, user: str, keys: int) -> list[str]:
    iam = clients("iam")
    iam.create_user(UserName=user, Path="/ci/", Tags=[{"Key": "stanch:role", "Value": "ci"}])
    return [iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"] for _ in range(keys)]


def _verify_sender(clients: AccountClients, sender: str) -> None:
    clients("ses").verify_email_identity(EmailAddress=sender)


def _seed_signing(clients: AccountClients) -> str:
    """Sandbox CA in Secrets Manager, signing key secret, code-signing cert imported to ACM."""
    sm, acm = clients("secretsmanager"), clients("acm")
    ca = certs.make_ca()
    sm.create_secret(Name=CA_SECRET, SecretString=ca.to_secret_string(), Description="stanch sandbox CA")
    key = certs.generate_key("ec-p256")
    pem = certs.key_pem(key)
    issued = certs.issue_code_signing_cert(key, "Desktop App Code Signing (sandbox)", 365, ca)
    sm.create_secret(
        Name=DESKTOP_SIGNING_SECRET, SecretString=pem, Description="desktop-app code-signing key"
    )
    arn = acm.import_certificate(
        Certificate=issued.certificate_pem.encode(),
        PrivateKey=pem.encode(),
        CertificateChain=(issued.chain_pem or "").encode(),
        Tags=[{"Key": "service", "Value": "desktop-app"}, {"Key": "purpose", "Value": "code-signing"}],
    )["CertificateArn"]
    return str(arn)


def _seed_release(
    clients: AccountClients,
    bucket: str = DESKTOP_RELEASE_BUCKET,
    version: str = "4.2.0",
    pinned: str = "^1.6.0",
    notes: str = "Dashboard charts, wallet reconnect fixes.",
) -> None:
    s3 = clients("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    manifest: dict[str, Any] = {
        "schema": 1,
        "version": version,
        "min_supported_version": version.split(".")[0] + ".0.0",
        "pinned": {"axios": pinned},
        "notes": notes,
        "incident": None,
        "published_at": "2026-03-30T22:10:00+00:00",
    }
    s3.put_object(
        Bucket=bucket,
        Key=DESKTOP_RELEASE_KEY,
        Body=(json.dumps(manifest, indent=2) + "\n").encode(),
        ContentType="application/json",
    )


AUDIENCES = {
    "desktop-users": Audience(
        sender="security@desktop-app.example",
        emails=["ana@customer-one.example", "bo@customer-two.example", "chen@customer-three.example"],
        slack_channel="#desktop-users",
    ),
    "web-users": Audience(
        sender="security@web-dashboard.example",
        emails=["ops@tenant-a.example", "it@tenant-b.example"],
        slack_channel="#web-users",
    ),
}


def _write_inventory(work: Path, inventory: Inventory, endpoint_url: str) -> Path:
    inv_path = work / "inventory.yaml"
    seeded = f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"
    header = f"# stanch sandbox inventory, seeded {seeded} (moto at {endpoint_url})\n"
    inv_path.write_text(
        header + yaml.safe_dump(inventory.model_dump(mode="json", exclude_none=True), sort_keys=False),
        encoding="utf-8",
    )
    return inv_path


def seed_fleet(endpoint_url: str, workdir: str | Path, variant: str = "default") -> SandboxFleet:
    """Create the fleet in the moto at ``endpoint_url`` and write ``workdir/inventory.yaml``.
    ``variant``: ``default`` (three services), ``two-lines`` (plus ``legacy-desktop`` on axios 0.x),
    one of ``fleet_library.LIBRARY_VARIANTS``, or a generated ``grid:<N>x<M>:<affected>``
    (``fleet_grid``)."""
    grid = parse_grid(variant)
    if variant not in VARIANTS and grid is None:
        raise ValueError(f"unknown sandbox fleet variant {variant!r} (known: {', '.join(VARIANTS)}, "
                         "grid:<accounts>x<services>:<affected>)")
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    settings = StanchSettings(aws_endpoint_url=endpoint_url, aws_region=REGION, home=work)
    if grid is not None:
        g = seed_grid(grid, lambda account: clients_for(settings, account, REGION), work, REGION)
        return SandboxFleet(endpoint_url=endpoint_url, region=REGION, accounts=g["accounts"],
                            inventory_path=_write_inventory(work, g["inventory"], endpoint_url),
                            services={k: SandboxService(**v) for k, v in g["services"].items()},
                            audiences=g["audiences"], ca_secret=CA_SECRET, ca_account=g["ca_account"],
                            variant=variant)
    web, desk, bill = (clients_for(settings, ACCOUNTS[k], REGION) for k in ("web", "desktop", "billing"))

    # desktop-app (affected)
    desk_dir = work / "services" / "desktop-app"
    _copy("stx-defi-dashboard.package-lock.json", desk_dir, "package-lock.json")
    _copy("stx-defi-dashboard.package.json", desk_dir, "package.json")
    desk_keys = _ci_user(desk, "ci-desktop-app", 2)
    cert_arn = _seed_signing(desk)
    _seed_release(desk)
    _verify_sender(desk, AUDIENCES["desktop-users"].sender)

    # web-dashboard (unaffected: axios 1.14.0 exactly)
    web_dir = work / "services" / "web-dashboard"
    _copy("web-dashboard.package-lock.json", web_dir, "package-lock.json")
    _copy("web-dashboard.package.json", web_dir, "package.json")
    web_keys = _ci_user(web, "ci-web-dashboard", 1)
    _verify_sender(web, AUDIENCES["web-users"].sender)

    # billing-api (unaffected, PyPI)
    bill_dir = work / "services" / "billing-api"
    _copy("sigstore-python.install.requirements.txt", bill_dir, "requirements.txt")
    bill_keys = _ci_user(bill, "ci-billing-api", 1)

    extra_services: list[Service] = []
    extra_sandbox: dict[str, SandboxService] = {}
    if variant == "two-lines":
        legacy_dir = work / "services" / "legacy-desktop"
        _copy("legacy-desktop.package-lock.json", legacy_dir, "package-lock.json")
        legacy_keys = _ci_user(desk, "ci-legacy-desktop", 1)
        _seed_release(desk, LEGACY_RELEASE_BUCKET, "1.9.0", "^0.30.0", "Legacy desktop maintenance release.")
        extra_services.append(
            Service(
                name="legacy-desktop",
                account=ACCOUNTS["desktop"],
                region=REGION,
                ecosystem="npm",
                lockfiles=["services/legacy-desktop/package-lock.json"],
                ci_user="ci-legacy-desktop",
                deploy_target=DeployTarget(kind="s3-release", bucket=LEGACY_RELEASE_BUCKET, key=DESKTOP_RELEASE_KEY),
                app_version="1.9.0",
                installs=[
                    InstallRecord(
                        at=datetime(2026, 3, 31, 1, 30, tzinfo=UTC),
                        ref="legacy@1f0c2aa",
                        lockfile="services/legacy-desktop/package-lock.json",
                    )
                ],
            )
        )
        extra_sandbox["legacy-desktop"] = SandboxService(
            name="legacy-desktop",
            account=ACCOUNTS["desktop"],
            ci_user="ci-legacy-desktop",
            access_key_ids=legacy_keys,
            lockfiles=[str(legacy_dir / "package-lock.json")],
            affected=True,
            release_bucket=LEGACY_RELEASE_BUCKET,
            release_key=DESKTOP_RELEASE_KEY,
            app_version="1.9.0",
        )

    inventory = Inventory(
        services=[
            Service(
                name="desktop-app",
                account=ACCOUNTS["desktop"],
                region=REGION,
                ecosystem="npm",
                lockfiles=["services/desktop-app/package-lock.json"],
                manifests=["services/desktop-app/package.json"],
                ci_user="ci-desktop-app",
                signing_certificate=cert_arn,
                signing_secret=DESKTOP_SIGNING_SECRET,
                deploy_target=DeployTarget(
                    kind="s3-release", bucket=DESKTOP_RELEASE_BUCKET, key=DESKTOP_RELEASE_KEY
                ),
                audience="desktop-users",
                app_version="4.2.0",
                installs=[
                    InstallRecord(
                        at=datetime(2026, 3, 31, 1, 0, tzinfo=UTC),
                        ref="main@94e9754",
                        lockfile="services/desktop-app/package-lock.json",
                    )
                ],
            ),
            Service(
                name="web-dashboard",
                account=ACCOUNTS["web"],
                region=REGION,
                ecosystem="npm",
                lockfiles=["services/web-dashboard/package-lock.json"],
                manifests=["services/web-dashboard/package.json"],
                ci_user="ci-web-dashboard",
                audience="web-users",
                app_version="2.7.3",
            ),
            Service(
                name="billing-api",
                account=ACCOUNTS["billing"],
                region=REGION,
                ecosystem="PyPI",
                lockfiles=["services/billing-api/requirements.txt"],
                ci_user="ci-billing-api",
            ),
            *extra_services,
        ],
        audiences=AUDIENCES,
    )
    extras = seed_variant(variant, {"web": web, "desktop": desk, "billing": bill}, inventory, work)
    inv_path = _write_inventory(work, inventory, endpoint_url)

    return SandboxFleet(
        endpoint_url=endpoint_url,
        region=REGION,
        accounts=sorted(ACCOUNTS.values()),
        inventory_path=inv_path,
        services={
            "desktop-app": SandboxService(
                name="desktop-app",
                account=ACCOUNTS["desktop"],
                ci_user="ci-desktop-app",
                access_key_ids=desk_keys,
                lockfiles=[str(desk_dir / "package-lock.json")],
                affected=True,
                certificate_arn=cert_arn,
                signing_secret=DESKTOP_SIGNING_SECRET,
                release_bucket=DESKTOP_RELEASE_BUCKET,
                release_key=DESKTOP_RELEASE_KEY,
                app_version="4.2.0",
                audience="desktop-users",
            ),
            "web-dashboard": SandboxService(
                name="web-dashboard",
                account=ACCOUNTS["web"],
                ci_user="ci-web-dashboard",
                access_key_ids=web_keys,
                lockfiles=[str(web_dir / "package-lock.json")],
                affected=False,
                app_version="2.7.3",
                audience="web-users",
            ),
            "billing-api": SandboxService(
                name="billing-api",
                account=ACCOUNTS["billing"],
                ci_user="ci-billing-api",
                access_key_ids=bill_keys,
                lockfiles=[str(bill_dir / "requirements.txt")],
                affected=False,
            ),
            **extra_sandbox,
        },
        audiences=AUDIENCES,
        ca_secret=CA_SECRET,
        ca_account=ACCOUNTS["desktop"],
        variant=variant,
        **extras,
    )
