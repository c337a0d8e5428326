"""The inventory file: which services exist, where their dependency manifests live, and what
containment touches for each (AWS account, CI user, signing certificate, deploy target, audience).

Owns: the pydantic models of ``inventory.yaml`` and ``load_inventory``. Paths inside the file are
relative to the file itself.
Must not touch: ``flows``, ``prefect``, AWS or Slack clients.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from integrations.errors import ConfigurationError
from integrations.inventory.readers import read_text_file


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeployTarget(_Model):
    """Where a new app release is published. ``s3-release``: a release manifest in a bucket."""

    kind: Literal["s3-release", "lambda"] = "s3-release"
    bucket: str | None = None
    key: str | None = None
    function: str | None = None


class Audience(_Model):
    """Who is told to update: an SES sender and recipients, and a Slack channel."""

    sender: str
    emails: list[str] = []
    slack_channel: str | None = None


class InstallRecord(_Model):
    """One CI install (``npm ci`` / ``pip install``) of the service, for exposure windows."""

    at: datetime
    ref: str | None = None
    lockfile: str | None = None


class Service(_Model):
    name: str
    account: str = Field(pattern=r"^\d{12}$")
    region: str = "us-east-1"
    ecosystem: str | None = None
    lockfiles: list[str] = []
    manifests: list[str] = []
    sboms: list[str] = []
    workflows: list[str] = []
    ci_user: str | None = None
    signing_certificate: str | None = Field(default=None, description="ACM certificate ARN used for code signing")
    signing_secret: str | None = Field(default=None, description="Secrets Manager name for the signing key")
    deploy_target: DeployTarget | None = None
    audience: str | None = Field(default=None, description="Key into the inventory's audiences")
    installs: list[InstallRecord] = []
    install_history: str | None = Field(default=None, description="JSON/CSV export of CI installs")
    app_version: str | None = None


class Inventory(_Model):
    services: list[Service]
    audiences: dict[str, Audience] = {}
    path: Path | None = Field(default=None, exclude=True)

    def resolve(self, relative: str) -> Path:
        base = self.path.parent if self.path else Path.cwd()
        p = Path(relative)
        return p if p.is_absolute() else base / p

    def service(self, name: str) -> Service:
        for s in self.services:
            if s.name == name:
                return s
        raise ConfigurationError(f"inventory has no service {name!r}")


def load_inventory(path: str | Path) -> Inventory:
    p = Path(path)
    try:
        raw = yaml.safe_load(read_text_file(p))
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{p}: not valid YAML: {exc}") from None
    try:
        inv = Inventory.model_validate(raw)
    except ValidationError as exc:
        raise ConfigurationError(f"{p}: invalid inventory: {exc}") from None
    inv.path = p.resolve()
    return inv
