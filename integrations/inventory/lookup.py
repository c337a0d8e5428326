"""Read named services out of the inventory, for runbooks that start from a service, not an advisory.

Owns: the ``inventory.lookup_services`` action (read-only): ``{services, inventory?}`` -> each named
service's inventory entry (account, CI user and secrets, signing certificate and profile, deploy
target, audience with its details). An unknown service name is a permanent error naming it.

Must not touch: ``flows``, ``prefect``, AWS or Slack clients, the network.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from integrations.base import ActionContext, ActionParams, ActionResult, ActionSpec, PlannedOperation
from integrations.errors import ConfigurationError, PermanentActionError
from integrations.inventory.model import load_inventory

__all__ = ["LOOKUP_SERVICES", "LookupServicesParams", "LookupServicesResult", "ServiceEntry"]


class LookupServicesParams(ActionParams):
    file_params: ClassVar[dict[str, str]] = {"inventory": "path"}

    services: list[str] = Field(min_length=1, description="Service names, as in the inventory")
    inventory: str | None = Field(default=None, description="Inventory file (empty = STANCH_INVENTORY)")


class ServiceEntry(ActionResult):
    name: str
    account: str
    region: str
    repository: str | None = None
    ci_user: str | None = None
    ci_secrets: list[str] = []
    signing_certificate: str | None = None
    signing_secret: str | None = None
    signing_profile: str | None = None
    deploy_target: dict[str, Any] | None = None
    app_version: str | None = None
    audience: str | None = None
    audience_detail: dict[str, Any] | None = None


class LookupServicesResult(ActionResult):
    services: list[ServiceEntry]


def _path(ctx: ActionContext, params: LookupServicesParams) -> str:
    path = params.inventory or (str(ctx.settings.inventory) if ctx.settings.inventory else None)
    if not path:
        raise PermanentActionError("no inventory: pass `inventory` or set STANCH_INVENTORY",
                                   operation="inventory.lookup_services")
    return path


def _run(ctx: ActionContext, params: LookupServicesParams) -> LookupServicesResult:
    try:
        inv = load_inventory(_path(ctx, params))
        found = [inv.service(n) for n in dict.fromkeys(params.services)]
    except ConfigurationError as exc:
        raise PermanentActionError(str(exc), operation="inventory.lookup_services") from exc
    out = []
    for svc in found:
        aud = inv.audiences.get(svc.audience) if svc.audience else None
        out.append(ServiceEntry(
            name=svc.name, account=svc.account, region=svc.region, repository=svc.repository,
            ci_user=svc.ci_user, ci_secrets=list(svc.ci_secrets), signing_certificate=svc.signing_certificate,
            signing_secret=svc.signing_secret, signing_profile=svc.signing_profile,
            deploy_target=svc.deploy_target.model_dump(exclude_none=True) if svc.deploy_target else None,
            app_version=svc.app_version, audience=svc.audience,
            audience_detail=aud.model_dump() if aud else None,
        ))
    return LookupServicesResult(services=out)


def _describe(ctx: ActionContext, params: LookupServicesParams) -> list[PlannedOperation]:
    return [PlannedOperation(service="inventory", operation="lookup_services", resources=params.services,
                             note="read-only")]


LOOKUP_SERVICES: ActionSpec[LookupServicesParams, LookupServicesResult] = ActionSpec(
    name="inventory.lookup_services",
    summary="Read named services' inventory entries (accounts, CI, signing, deploy target, audience)",
    params=LookupServicesParams,
    result=LookupServicesResult,
    run=_run,
    mutating=False,
    idempotent=True,
    describe=_describe,
)
