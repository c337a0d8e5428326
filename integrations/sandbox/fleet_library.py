"""Fleet variants for the runbook library (runbooks/): the state each runbook acts on.

Owns: ``seed_variant(variant, clients, inventory, workdir) -> dict`` (extra ``SandboxFleet``
fields), called by ``fleet.seed_fleet`` after the default fleet exists and before the inventory
file is written, and the models of what it creates (ids, names, ARNs — never secret values):

- ``leaked-key`` (``leaked-access-key``): in the billing account 333333333333, IAM user
  ``svc-reporting`` with two keys — the first is ``leaked_access_key_id`` — and ``svc-etl`` with
  one key (must stay untouched).
- ``tenants`` (``api-key-exposure``): in the web account 111111111111, one Secrets Manager API key
  per tenant (``tenants/<id>/api-key``, tags ``tenant``, ``tenant-contact``, ``tenant-topic``),
  an SNS topic per tenant (``tenant-<id>-security``) and the verified SES sender
  ``security@platform.example``.
- ``ci-action`` (``compromised-ci-action``): GitHub Actions workflows using tj-actions/changed-files
  — desktop-app on the moved tag ``@v45`` with a CI run on 2025-03-14 (affected), web-dashboard
  pinned to the malicious commit 0e58ed86… (affected), billing-api pinned to the v46.0.1 SHA
  (clean) — each service with a repository and CI secrets (``<service>/ci/token``) in its inventory.
- ``signing`` (``compromised-signing-certificate``): desktop-app's builds are also signed through
  the AWS Signer profile ``desktop_app_signing`` (account 222222222222) on its ACM certificate.

Must not touch: ``flows``, ``prefect``.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from integrations.inventory.model import InstallRecord, Inventory

__all__ = ["LIBRARY_VARIANTS", "SIGNING_PROFILE", "TENANT_SENDER", "SandboxTenant", "SandboxUser", "seed_variant"]

LIBRARY_VARIANTS = ("leaked-key", "tenants", "ci-action", "signing")
SIGNING_PROFILE = "desktop_app_signing"
TENANT_SENDER = "security@platform.example"
TENANTS = ("acme", "globex", "hooli", "initech", "stark", "umbrella")
BAD_COMMIT = "0e58ed8671d6b60d0890c21b07f8835ace038e67"
V46_SHA = "2f7c5bfce28377bc069a65ba478de0a74aa0ca32"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SandboxUser(_Model):
    name: str
    account: str
    access_key_ids: list[str]


class SandboxTenant(_Model):
    tenant: str
    account: str
    secret_name: str
    secret_arn: str
    contact: str
    topic_arn: str


def _workflow(ref: str, comment: str = "") -> str:
    tail = f" # {comment}" if comment else ""
    return (
        "# Written for the stanch sandbox (compromised-ci-action).\n"
        "name: lint-changed\non: [pull_request]\njobs:\n  lint:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/checkout@v4\n      - id: changed\n"
        f"        uses: tj-actions/changed-files@{ref}{tail}\n"
        '      - run: echo "${{ steps.changed.outputs.all_changed_files }}"\n'
    )


def _leaked_key(clients: dict[str, Any]) -> dict[str, Any]:
    iam = clients["billing"]("iam")
    users: dict[str, SandboxUser] = {}
    for name, keys in (("svc-reporting", 2), ("svc-etl", 1)):
        iam.create_user(UserName=name, Path="/svc/")
        ids = [iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"] for _ in range(keys)]
        users[name] = SandboxUser(name=name, account=clients["billing"].account, access_key_ids=ids)
    return {"users": users, "leaked_access_key_id": users["svc-reporting"].access_key_ids[0]}


def _tenants(clients: dict[str, Any]) -> dict[str, Any]:
    web = clients["web"]
    sm, sns = web("secretsmanager"), web("sns")
    web("ses").verify_email_identity(EmailAddress=TENANT_SENDER)
    tenants: dict[str, SandboxTenant] = {}
    for t in TENANTS:
        topic = sns.create_topic(Name=f"tenant-{t}-security")["TopicArn"]
        contact = f"security@{t}.example"
        arn = sm.create_secret(
            Name=f"tenants/{t}/api-key",
            SecretString=secrets.token_urlsafe(24),
            Tags=[{"Key": "tenant", "Value": t}, {"Key": "tenant-contact", "Value": contact},
                  {"Key": "tenant-topic", "Value": topic}],
        )["ARN"]
        tenants[t] = SandboxTenant(tenant=t, account=web.account, secret_name=f"tenants/{t}/api-key",
                                   secret_arn=arn, contact=contact, topic_arn=topic)
    return {"tenants": tenants}


def _ci_action(clients: dict[str, Any], inventory: Inventory, work: Path) -> dict[str, Any]:
    plan = {
        "desktop-app": ("desktop", "v45", ""),
        "web-dashboard": ("web", BAD_COMMIT, "v45.0.7"),
        "billing-api": ("billing", V46_SHA, "v46.0.1"),
    }
    ci_secrets: dict[str, list[str]] = {}
    for svc in inventory.services:
        if svc.name not in plan:
            continue
        key, ref, comment = plan[svc.name]
        folder = work / "services" / svc.name / ".github" / "workflows"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "lint.yml").write_text(_workflow(ref, comment), encoding="utf-8")
        svc.workflows = [f"services/{svc.name}/.github/workflows/lint.yml"]
        svc.repository = f"example-org/{svc.name}"
        arn = clients[key]("secretsmanager").create_secret(
            Name=f"{svc.name}/ci/token", SecretString=secrets.token_urlsafe(24)
        )["ARN"]
        svc.ci_secrets = [str(arn)]
        ci_secrets[svc.name] = [str(arn)]
        # CI runs of the tag-pinned workflow while the tag pointed at the malicious commit
        if ref == "v45":
            svc.installs = [*svc.installs, InstallRecord(at=datetime(2025, 3, 14, 20, 0, tzinfo=UTC), ref="main")]
    return {"ci_secrets": ci_secrets}


def _signing(clients: dict[str, Any], inventory: Inventory) -> dict[str, Any]:
    desk = inventory.service("desktop-app")
    clients["desktop"]("signer").put_signing_profile(
        profileName=SIGNING_PROFILE,
        platformId="AWSLambda-SHA384-ECDSA",
        signingMaterial={"certificateArn": str(desk.signing_certificate)},
        signatureValidityPeriod={"value": 12, "type": "MONTHS"},
    )
    desk.signing_profile = SIGNING_PROFILE
    return {}


def seed_variant(variant: str, clients: dict[str, Any], inventory: Inventory, work: Path) -> dict[str, Any]:
    """Create the variant's extra state; returns extra ``SandboxFleet`` fields ({} for others)."""
    if variant == "leaked-key":
        return _leaked_key(clients)
    if variant == "tenants":
        return _tenants(clients)
    if variant == "ci-action":
        return _ci_action(clients, inventory, work)
    if variant == "signing":
        return _signing(clients, inventory)
    return {}
