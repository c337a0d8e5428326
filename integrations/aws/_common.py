"""Pieces shared by the AWS actions: the account/region params every action takes, and helpers.

Owns: ``AwsParams`` (``account`` as 12 digits, optional ``region``), the region resolution rule
(param, else ``settings.aws_region``) and ``safe_describe`` (a ``describe`` that degrades to a
generic plan when the read-only lookup itself fails, e.g. no credentials at plan time).
Must not touch: ``flows``, ``prefect``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import Field

from integrations.base import ActionContext, ActionParams, PlannedOperation
from integrations.errors import ActionError, DrillSafetyError

ACCOUNT_PATTERN = r"^\d{12}$"

P = TypeVar("P", bound="AwsParams")


class AwsParams(ActionParams):
    """Every AWS action acts in one account (by assuming the responder role there)."""

    account: str = Field(pattern=ACCOUNT_PATTERN, description="12-digit AWS account id")
    region: str | None = Field(default=None, description="Defaults to STANCH_AWS_REGION")


def region_of(ctx: ActionContext, params: AwsParams) -> str:
    return params.region or ctx.settings.aws_region


def safe_describe(
    lookup: Callable[[ActionContext, P], list[PlannedOperation]],
    fallback: Callable[[ActionContext, P], list[PlannedOperation]],
) -> Callable[[ActionContext, P], list[PlannedOperation]]:
    """Run the read-only ``lookup``; if AWS cannot be reached, plan from params alone."""

    def describe(ctx: ActionContext, params: P) -> list[PlannedOperation]:
        try:
            return lookup(ctx, params)
        except DrillSafetyError:
            raise
        except ActionError as exc:
            ops = fallback(ctx, params)
            for op in ops:
                op.note = f"{op.note + '; ' if op.note else ''}current state unknown ({exc})"
            return ops

    return describe


def tag_dict(tags: list[dict[str, Any]] | None) -> dict[str, str]:
    """``[{"Key": k, "Value": v}]`` -> ``{k: v}``."""
    return {str(t["Key"]): str(t.get("Value", "")) for t in tags or []}
