"""The one error hierarchy of stanch.

Owns: every exception type that crosses a layer boundary (runbook errors, action errors,
configuration errors). The CLI, the Slack app and the reports render these, so the message
of an error is written once, here or where it is raised, and said the same way everywhere.

Must not touch: Prefect, boto3, Slack. This module imports nothing but the standard library.
"""

from __future__ import annotations


class StanchError(Exception):
    """Base of every error stanch raises on purpose. ``str(err)`` is the user-facing message."""

    code: str = "ST000"


class ConfigurationError(StanchError):
    """Settings, inventory or sandbox state are missing or inconsistent."""

    code = "ST100"


class InputError(StanchError):
    """A runbook input given on the command line / Slack is missing or malformed."""

    code = "ST200"


class RunbookError(StanchError):
    """A runbook failed to load or validate. ``diagnostics`` holds every problem found."""

    code = "RB000"

    def __init__(self, message: str, diagnostics: list | None = None) -> None:
        super().__init__(message)
        self.diagnostics = list(diagnostics or [])


class ActionError(StanchError):
    """An action failed. Subclasses say whether retrying can help."""

    code = "AC000"
    transient: bool = False

    def __init__(self, message: str, *, operation: str | None = None, aws_code: str | None = None) -> None:
        super().__init__(message)
        self.operation = operation
        self.aws_code = aws_code


class TransientActionError(ActionError):
    """Throttling, 5xx, timeouts, connection resets: retried with jittered backoff."""

    code = "AC100"
    transient = True


class PermanentActionError(ActionError):
    """AccessDenied, validation, missing resources: fail fast with a clear report."""

    code = "AC200"
    transient = False


class DrillSafetyError(StanchError):
    """A drill was about to talk to something that is not the sandbox."""

    code = "ST300"


class StartError(StanchError):
    """A run could not be started (its flow run could not be created in time). Nothing ran;
    ``attempts`` says how often creation was tried."""

    code = "ST400"

    def __init__(self, message: str, *, attempts: int = 0) -> None:
        super().__init__(message)
        self.attempts = attempts
