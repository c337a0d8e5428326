"""Pieces shared by the AWS actions: the account/region params every action takes, and helpers.

Owns: ``AwsParams`` (``account`` as 12 digits, optional ``region``), the region resolution rule
(param, else ``settings.aws_region``) and ``safe_describe`` (a ``describe`` that degrades to a
generic plan when the read-only lookup itself fails, e.g. no credentials at plan time), and small
helpers: ``token_uuid`` (client tokens from ``ctx.idempotency_token``), ``stamp`` (yyyymmddHHMM
suffixes), ``where`` (account/region for compensation params), ``is_code``.
Must not touch: ``flows``, ``prefect``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
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


_TOKEN_NS = uuid.UUID("8d0f3c52-6a43-4f0e-9b7e-2f4c1d7a5e10")


def token_uuid(ctx: ActionContext, purpose: str = "") -> str:
    """A UUID stable per incident/step/item (and ``purpose``): an AWS client token or version id."""
    return str(uuid.uuid5(_TOKEN_NS, f"{ctx.idempotency_token}|{purpose}"))


def stamp(now: datetime | None = None) -> str:
    """``yyyymmddHHMM`` in UTC: the suffix of resources created as replacements."""
    return (now or datetime.now(UTC)).strftime("%Y%m%d%H%M")


def where(params: AwsParams) -> dict[str, Any]:
    """``{"account", "region"?}`` of ``params``: the start of every compensation's params."""
    out: dict[str, Any] = {"account": params.account}
    if params.region:
        out["region"] = params.region
    return out


def is_code(exc: ActionError, *codes: str) -> bool:
    """True if ``exc`` carries one of the AWS error ``codes``."""
    return getattr(exc, "aws_code", None) in codes


SKIP_REASON_DOC = (
    "Set by the forward step's compensation_params when that step changed nothing: "
    "the undo then makes no call and reports this reason"
)
