"""What a run targeted, recorded in the incident so ``resume`` and ``rollback`` target exactly that.

Owns: ``RunTarget`` (AWS endpoint, Slack base URL, sandbox yes/no, drill yes/no, region, role
name — never a secret; written to ``incident.json`` as ``target``), ``reattach`` (the environment
a resumed run or a rollback must use, or a ``ConfigurationError`` when that target is unavailable,
e.g. the sandbox is down — never a fall-through to the default AWS endpoint) and
``endpoint_answers`` (a TCP probe of a loopback endpoint).

Must not touch: Prefect, boto3, Slack. Applying the environment is the caller's (flows.entrypoints.cli).
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError

from integrations.errors import ConfigurationError
from integrations.settings import StanchSettings
from integrations.urls import is_loopback

__all__ = ["RunTarget", "endpoint_answers", "is_loopback", "reattach"]


def endpoint_answers(url: str, timeout: float = 2.0) -> bool:
    """Whether something accepts TCP connections at ``url``'s host and port."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


class RunTarget(BaseModel):
    """Exactly what a run talked to. ``aws_endpoint_url=None`` means the default AWS endpoints."""

    model_config = ConfigDict(extra="forbid")

    aws_endpoint_url: str | None
    slack_base_url: str | None
    sandbox: bool
    drill: bool
    region: str
    assume_role_name: str

    @classmethod
    def of(cls, settings: StanchSettings, *, drill: bool) -> RunTarget:
        return cls(aws_endpoint_url=settings.aws_endpoint_url, slack_base_url=settings.slack_base_url,
                   sandbox=is_loopback(settings.aws_endpoint_url), drill=drill, region=settings.aws_region,
                   assume_role_name=settings.assume_role_name)

    def environment(self) -> dict[str, str | None]:
        """``STANCH_*`` variables that point a process at this target (None: unset it)."""
        return {"STANCH_AWS_ENDPOINT_URL": self.aws_endpoint_url, "STANCH_SLACK_BASE_URL": self.slack_base_url,
                "STANCH_AWS_REGION": self.region, "STANCH_ASSUME_ROLE_NAME": self.assume_role_name}

    def describe(self) -> str:
        where = f"the sandbox at {self.aws_endpoint_url}" if self.sandbox else \
            (f"AWS at {self.aws_endpoint_url}" if self.aws_endpoint_url else "the default AWS endpoints")
        return f"{where}, region {self.region}, role {self.assume_role_name}" + (" (drill)" if self.drill else "")


def reattach(meta: dict[str, Any], sandbox_env: dict[str, str] | None,
             sandbox_url: str | None) -> tuple[RunTarget, dict[str, str | None]]:
    """The recorded target of an incident and the environment that reaches it.

    ``sandbox_env``/``sandbox_url``: the running sandbox's environment and AWS URL, if one runs for
    this home. A sandbox run reattaches to the same endpoint (with the running sandbox's
    credentials when it is that one) and is refused when that endpoint does not answer."""
    raw = meta.get("target")
    if not isinstance(raw, dict):
        raise ConfigurationError("incident.json records no target")
    try:
        target = RunTarget.model_validate(raw)
    except ValidationError as exc:
        raise ConfigurationError(f"incident.json: unreadable target ({exc.error_count()} problem(s): "
                                 f"{exc.errors()[0]['loc']} {exc.errors()[0]['msg']})") from None
    env: dict[str, str | None] = {}
    if target.sandbox or target.drill:
        url = target.aws_endpoint_url or ""
        if not is_loopback(url) or (target.slack_base_url and not is_loopback(target.slack_base_url)):
            raise ConfigurationError(f"incident.json: a sandbox/drill target must be loopback, got AWS "
                                     f"{url or 'default endpoints'}, Slack {target.slack_base_url or 'none'}")
        if sandbox_env is not None and sandbox_url == url:
            env.update(sandbox_env)
        elif not endpoint_answers(url):
            now = f"; a sandbox now runs at {sandbox_url}, but its AWS state is not this incident's" \
                if sandbox_url else ""
            raise ConfigurationError(
                f"this incident ran against the sandbox at {url}, which does not answer{now}. "
                "Refusing to resume or roll back against anything else (never real AWS): "
                "bring that sandbox back, or handle the incident by hand")
    env.update(target.environment())
    return target, env
