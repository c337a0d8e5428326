"""Process settings for stanch, read from ``STANCH_*`` environment variables.

Owns: the names and defaults of every setting an integration or entry point reads.
Must not touch: Prefect, boto3, Slack (settings are plain values; clients are built elsewhere).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

POSTGRES_SCHEMES = ("postgresql", "postgres")  # the URL schemes of the PostgreSQL store


class StanchSettings(BaseSettings):
    """All knobs, one place. ``STANCH_AWS_ENDPOINT_URL=http://127.0.0.1:5000`` and so on."""

    model_config = SettingsConfigDict(env_prefix="STANCH_", extra="forbid")

    home: Path = Field(default=Path(".stanch"), description="State directory (sandbox state, default store).")
    store: str | Path | None = Field(
        default=None, description="Incident store: a folder (default <home>/incidents), or postgresql://… for the "
        "PostgreSQL store (the record lives in the database; <home>/incidents is then a local working copy). Any "
        "other scheme:// is refused.")
    aws_endpoint_url: str | None = Field(default=None, description="Override AWS endpoint (sandbox/moto).")
    aws_region: str = "us-east-1"
    aws_max_attempts: int = Field(default=3, ge=1, le=10, description="Attempts per AWS call inside botocore "
                                  "(standard retry mode) before the engine's step retries take over.")
    assume_role_name: str = Field(default="StanchIncidentResponder", description="Role assumed in each account.")
    slack_base_url: str | None = Field(default=None, description="Slack Web API base URL (stand-in in sandbox).")
    slack_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_channel: str = "#incident"
    slack_retry_backoff: float = Field(
        default=0.5, ge=0, le=10, description="Backoff factor (s) between retries of a Slack 5xx/connection "
        "error: waits factor*2^attempt plus up to 2*factor jitter (tests set it small).")
    inventory: Path | None = Field(default=None, description="Default inventory file.")
    advisories_dir: Path | None = Field(default=None, description="Directory of OSV records looked up by id.")
    osv_api_url: str | None = Field(
        default="https://api.osv.dev", description="OSV API fetched for advisory ids neither bundled nor in "
        "advisories_dir (cached under <home>/advisory-cache); empty = never fetch (offline, cache only).")
    npm_registry_url: str | None = Field(
        default="https://registry.npmjs.org", description="npm registry whose metadata checks safe versions "
        "(exists, not deprecated); empty = no check (the safe version stays a labelled guess).")
    pypi_url: str | None = Field(
        default="https://pypi.org", description="PyPI whose JSON API checks safe versions (exists, not yanked); "
        "empty = no check.")
    approver_keys_file: Path | None = Field(
        default=None, description="Approvers' Ed25519 public keys ('<Slack id> ssh-ed25519 AAAA…' per line): "
        "the run accepts a CLI approve/deny only when signed with the key of the approver it names.")

    drill_approval_expires: float | None = Field(
        default=None, gt=0, description="Drills only: every approval expires after at most this many seconds "
        "(time compression for tabletop drills; a live run ignores it). Set by `stanch drill run` from the "
        "scenario's approval_expires.")
    run_tags: str = Field(
        default="", description="Extra Prefect tags (comma-separated) for every flow run this process runs, "
        "besides runbook:/severity:/drill|live; a drill sets 'scenario:<name>' for the runbook run it starts.")

    timeline_key: SecretStr | None = Field(
        default=None, description="Ed25519 private key that signs timeline checkpoints: a path to a PEM/OpenSSH "
        "key file, or the key itself (PEM text, or base64 of the 32-byte seed). Keep it outside the store.")
    timeline_pubkeys: str | None = Field(
        default=None, description="Public keys trusted for checkpoint signatures: a path to a file, or the keys "
        "themselves; one per line ('ssh-ed25519 AAAA…', or base64 of 32 raw bytes). The public half of "
        "STANCH_TIMELINE_KEY is always trusted.")

    @field_validator("store", mode="before")
    @classmethod
    def _store_is_a_folder_or_postgresql(cls, value: Any) -> Any:
        """A value that looks like a URL (``scheme://…``) must be ``postgresql://`` or
        ``postgres://``: any other (``postgresql+asyncpg://``, ``mysql://``, ``sqlite://``) is
        refused rather than taken for a relative folder path. Only the scheme is named (the rest of
        the URL may hold a password)."""
        if isinstance(value, str) and (m := re.match(r"\s*([A-Za-z][A-Za-z0-9+.-]*)://", value)) \
                and m.group(1) not in POSTGRES_SCHEMES:
            raise ValueError(f"unsupported store URL scheme {m.group(1)!r}: STANCH_STORE is a folder or "
                             "postgresql://user@host:port/database")
        return value

    @property
    def extra_run_tags(self) -> list[str]:
        return [t.strip() for t in self.run_tags.split(",") if t.strip()]

    @property
    def store_url(self) -> str | None:
        """The PostgreSQL store's URL, or None for the folder store."""
        url = str(self.store or "")
        return url if url.startswith(tuple(f"{s}://" for s in POSTGRES_SCHEMES)) else None

    @property
    def store_dir(self) -> Path:
        """The incident folders: the store itself, or the PostgreSQL store's local working copy."""
        if self.store and not self.store_url:
            return Path(self.store)
        return self.home / "incidents"


def load_settings() -> StanchSettings:
    return StanchSettings()
