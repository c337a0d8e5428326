"""Inventory integration: who is affected by an advisory.

Owns: the ``inventory.match_advisory`` action (read-only, idempotent; ``lookup`` adds
``inventory.lookup_services``) and the public API the CLI
uses (``scope``, ``scope_many``, ``render_scope_table``). The work happens in ``osv`` (advisories),
``versions`` (per-ecosystem version semantics), ``readers`` (lockfiles, SBOMs, workflows),
``match`` (the result model, exposure and safe versions) and ``model`` (the inventory file).

Must not touch: ``flows``, ``prefect``, AWS or Slack clients, the network (except ``osv_api``,
which fetches advisories that are not bundled from OSV and caches them).
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from integrations.base import (
    ActionContext,
    ActionParams,
    ActionRegistry,
    ActionSpec,
    PermanentActionError,
    PlannedOperation,
)
from integrations.errors import ConfigurationError, InputError
from integrations.inventory.match import (
    AdvisoryInfo,
    AffectedService,
    Confirmation,
    ExposureWindow,
    MatchedPackage,
    MatchResult,
    SafeVersion,
    ServiceError,
    ServiceVerdict,
    render_scope_table,
    scope,
    scope_many,
    scope_notes,
    summarize_safe_versions,
)

__all__ = [
    "AdvisoryInfo",
    "AffectedService",
    "Confirmation",
    "ExposureWindow",
    "MatchAdvisoryParams",
    "MatchResult",
    "MatchedPackage",
    "SafeVersion",
    "ServiceError",
    "ServiceVerdict",
    "register",
    "render_scope_table",
    "scope",
    "scope_many",
    "scope_notes",
    "summarize_safe_versions",
]


class MatchAdvisoryParams(ActionParams):
    file_params: ClassVar[dict[str, str]] = {"inventory": "path", "advisory": "path-or-id"}
    """Parameters that name files (confined to STANCH_SLACK_INPUT_DIRS when given from Slack)."""

    advisory: str
    """An OSV id (looked up in ``settings.advisories_dir``, then the bundled records) or a path."""
    inventory: str | None = None
    """Inventory file; empty or omitted: ``STANCH_INVENTORY`` (the sandbox sets it)."""
    live_from: datetime | None = None
    live_until: datetime | None = None


def _inventory_path(ctx: ActionContext, params: MatchAdvisoryParams) -> str:
    if params.inventory:
        return params.inventory
    if ctx.settings.inventory is not None:
        return str(ctx.settings.inventory)
    raise PermanentActionError("no inventory: pass the `inventory` input or set STANCH_INVENTORY",
                               operation="inventory.match_advisory")


def _run(ctx: ActionContext, params: MatchAdvisoryParams) -> MatchResult:
    from integrations.inventory.osv import resolve_advisory
    from integrations.inventory.osv_api import advisory_dirs
    from integrations.inventory.registry import check_safe_versions

    inventory = _inventory_path(ctx, params)
    try:
        dirs = advisory_dirs([params.advisory], [ctx.settings.advisories_dir], ctx.settings)
        result = scope(params.advisory, inventory, params.live_from, params.live_until, dirs)
        result = check_safe_versions(result, resolve_advisory(params.advisory, dirs), ctx.settings)
    except (InputError, ConfigurationError) as exc:
        raise PermanentActionError(str(exc), operation="inventory.match_advisory") from exc
    ctx.record(
        "scope",
        {
            "advisory": result.advisory.id,
            "affected": [s.name for s in result.affected],
            "needs_confirmation": sorted({c.service for c in result.needs_confirmation}),
            "unaffected": len(result.unaffected),
            "unreadable": [{"service": e.service, "file": e.file, "error": e.error} for e in result.errors],
            "pins": {s.name: s.pins for s in result.affected},
            "remove": {s.name: s.remove for s in result.affected if s.remove},
            "warnings": result.warnings,
        },
    )
    return result


def _describe(ctx: ActionContext, params: MatchAdvisoryParams) -> list[PlannedOperation]:
    return [
        PlannedOperation(
            service="inventory",
            operation="match_advisory",
            resources=[params.advisory, params.inventory or str(ctx.settings.inventory or "(STANCH_INVENTORY)")],
            note="read-only: parses the advisory, lockfiles, SBOMs and workflows",
        )
    ]


MATCH_ADVISORY: ActionSpec[MatchAdvisoryParams, MatchResult] = ActionSpec(
    name="inventory.match_advisory",
    summary="Which services an OSV advisory affects, with dependency paths, exposure and safe versions",
    params=MatchAdvisoryParams,
    result=MatchResult,
    run=_run,
    mutating=False,
    idempotent=True,
    describe=_describe,
)


def register(registry: ActionRegistry) -> None:
    from integrations.inventory.lookup import LOOKUP_SERVICES

    registry.register(MATCH_ADVISORY)
    registry.register(LOOKUP_SERVICES)
