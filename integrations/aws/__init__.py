"""AWS containment actions (IAM, ACM, Secrets Manager, KMS, Signer, Lambda, ECS, CodePipeline, S3,
SES, SNS) behind the stanch action contract.

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
    from integrations.aws import (
        acm,
        ecs,
        iam,
        iam_certs,
        iam_cleanup,
        iam_keys,
        iam_replace,
        iam_sessions,
        kms,
        lambda_,
        pipeline,
        s3,
        secrets_inventory,
        secretsmanager,
        ses,
        ses_templates,
        signer,
        sns,
    )

    return [
        iam.DEACTIVATE,
        iam.REACTIVATE,
        iam_cleanup.DELETE_KEYS,
        iam_cleanup.REMOVE_LOGIN_PROFILE,
        iam_keys.FIND_KEY,
        iam_keys.DEACTIVATE_ONE,
        iam_keys.ATTACH_DENY,
        iam_keys.DETACH_DENY,
        iam_replace.REPLACE_KEY,
        iam_replace.REVERT_REPLACEMENT,
        iam_sessions.REVOKE,
        iam_sessions.REMOVE_REVOCATION,
        iam_certs.UPLOAD,
        iam_certs.DELETE,
        acm.ROTATE,
        secretsmanager.ROTATE,
        secretsmanager.RESTORE,
        secrets_inventory.FIND_SECRETS,
        kms.DISABLE,
        kms.ENABLE,
        kms.SCHEDULE_DELETION,
        kms.CANCEL_DELETION,
        signer.ROTATE,
        lambda_.DEPLOY,
        lambda_.SHIFT_ALIAS,
        ecs.FORCE,
        ecs.RESTORE,
        pipeline.START,
        s3.PUBLISH,
        s3.RESTORE,
        ses.SEND,
        ses_templates.SEND_TEMPLATED,
        sns.PUBLISH,
    ]


def register(registry: ActionRegistry) -> None:
    """Add every AWS action to ``registry``."""
    registry.register_all(all_actions())
