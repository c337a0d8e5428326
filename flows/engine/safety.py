"""Drill safety: a drill may only ever talk to sandbox (loopback) endpoints.

Owns: ``check_drill_targets``. Must not touch: Prefect, boto3, Slack.
"""

from __future__ import annotations

from urllib.parse import urlparse

from integrations.errors import DrillSafetyError
from integrations.settings import StanchSettings

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_drill_targets(settings: StanchSettings) -> None:
    """Raise DrillSafetyError unless AWS (and Slack, if configured) point at loopback."""
    problems = []
    aws_host = urlparse(settings.aws_endpoint_url).hostname if settings.aws_endpoint_url else None
    if aws_host not in LOOPBACK:
        problems.append(f"AWS endpoint is {settings.aws_endpoint_url or 'real AWS'}")
    if settings.slack_token is not None:
        slack_host = urlparse(settings.slack_base_url).hostname if settings.slack_base_url else None
        if slack_host not in LOOPBACK:
            problems.append(f"Slack endpoint is {settings.slack_base_url or 'slack.com'}")
    if problems:
        raise DrillSafetyError("refusing to run a drill outside the sandbox: " + "; ".join(problems)
                               + ". Start one with `stanch sandbox up`.")
