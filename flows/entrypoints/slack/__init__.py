"""The Slack front door of stanch: ``/stanch`` commands and approval buttons.

Modules: ``commands`` (parsing ``/stanch …`` text, help, de-duplication of Slack retries, who may
start a runbook, rendering ``status`` / ``list``; Bolt- and Prefect-free), ``launchers`` (how a
run starts: ``InProcessLauncher`` in a thread, ``DeploymentLauncher`` via ``run_deployment``,
``RecordingLauncher`` for benchmarks), ``gate`` (the HTTP checks — signature, replay window, size,
well-formed body — made on the raw request before anything parses it), ``files`` (inputs from
Slack that name files, confined to configured folders). The Bolt app itself is
``flows.entrypoints.slack_app``.

Must not touch: the runtime's flow body, the approval rules (``flows.engine.approval_policy``) or how a
decision reaches a paused run (``flows.engine.approvals``): this package only calls them.
"""

from __future__ import annotations

from flows.entrypoints.slack.commands import (
    HELP_TEXT,
    Command,
    GroupDirectory,
    SeenSet,
    dedupe_key,
    open_incidents,
    parse_command,
    run_refusal,
)
from flows.entrypoints.slack.launchers import (
    DeploymentLauncher,
    InProcessLauncher,
    LaunchRequest,
    LaunchResult,
    RecordingLauncher,
    RunLauncher,
)

__all__ = [
    "HELP_TEXT",
    "Command",
    "DeploymentLauncher",
    "GroupDirectory",
    "InProcessLauncher",
    "LaunchRequest",
    "LaunchResult",
    "RecordingLauncher",
    "RunLauncher",
    "SeenSet",
    "dedupe_key",
    "open_incidents",
    "parse_command",
    "run_refusal",
]
