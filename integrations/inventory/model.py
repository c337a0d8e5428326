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
    ci_secrets: list[str] = Field(
        default=[], description="Secrets Manager ARNs the service's CI pipelines can read (rotated if CI is hit)"
    )
    repository: str | None = Field(default=None, description="Source repository (owner/name) of the service")
    signing_certificate: str | None = Field(default=None, description="ACM certificate ARN used for code signing")
    signing_secret: str | None = Field(default=None, description="Secrets Manager name for the signing key")
    signing_profile: str | None = Field(default=None, description="AWS Signer profile signing the service's builds")
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


def content_free_problem(exc: BaseException) -> str:
    """Where and what kind of problem a parse/validation error is, without any of the text it read
    (a pydantic or PyYAML message quotes the input: a password, a key, ``/etc/hostname``)."""
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors(include_input=False, include_url=False, include_context=False)[:5]:
            loc = ".".join(str(x) if isinstance(x, int) or (str(x).isidentifier() and len(str(x)) <= 40) else "?"
                           for x in err["loc"]) or "top level"
            kind = "unknown field" if err["type"] == "extra_forbidden" else str(err["type"]).replace("_", " ")
            parts.append(f"{loc}: {kind}")
        more = exc.error_count() - len(parts)
        return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        return f"not valid YAML (line {mark.line + 1}, column {mark.column + 1})"
    lineno, colno = getattr(exc, "lineno", None), getattr(exc, "colno", None)
    if lineno is not None:
        return f"not valid {type(exc).__name__.removesuffix('DecodeError') or 'data'} (line {lineno}, column {colno})"
    return f"unreadable ({type(exc).__name__})"


def load_inventory(path: str | Path) -> Inventory:
    """The inventory at ``path``. Errors name the file and the problem, never its content."""
    p = Path(path)
    try:
        raw = yaml.safe_load(read_text_file(p))
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{p}: {content_free_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{p}: invalid inventory: expected a mapping with `services:`, "
                                 f"found {type(raw).__name__}")
    try:
        inv = Inventory.model_validate(raw)
    except ValidationError as exc:
        raise ConfigurationError(f"{p}: invalid inventory: {content_free_problem(exc)}") from None
    inv.path = p.resolve()
    return inv
