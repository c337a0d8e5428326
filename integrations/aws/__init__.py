"""AWS containment actions (IAM, ACM, S3, SES) behind the stanch action contract.

Owns: ``register(registry)`` — the ``stanch.integrations`` entry point ``aws`` — which adds every
AWS action. Sub-modules: ``session`` (assume-role client factory), ``errors`` (botocore ->
Transient/PermanentActionError), ``certs`` (X.509 material), and one module per service.

Must not touch: ``flows``, ``prefect``.
"""

from __future__ import annotations

from typing import Any

from integrations.base import ActionRegistry, ActionSpec

__all__ = ["all_actions", "register"]


def all_actions() -> list[ActionSpec[Any, Any]]:
    from integrations.aws import acm, iam, s3, ses

    return [iam.DEACTIVATE, iam.REACTIVATE, acm.ROTATE, s3.PUBLISH, s3.RESTORE, ses.SEND]


def register(registry: ActionRegistry) -> None:
    """Add every AWS action to ``registry``."""
    registry.register_all(all_actions())
