"""Which Secrets Manager secrets a runbook should act on: listed by tag (read-only).

Owns: ``aws.secretsmanager.find_secrets`` — ``ListSecrets`` filtered by a tag key (and optionally
its values, e.g. the affected tenants), all pages, with each secret's tags. It never reads a
secret's value. Runbooks fan out over ``secrets`` (e.g. rotate each tenant's API key, batched).

Must not touch: ``flows``, ``prefect``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from integrations.aws._common import AwsParams, region_of, tag_dict
from integrations.aws.errors import aws_call
from integrations.aws.session import clients_for
from integrations.base import ActionContext, ActionResult, ActionSpec, PlannedOperation

__all__ = ["FIND_SECRETS", "FoundSecret"]


class FindSecretsParams(AwsParams):
    tag_key: str = Field(min_length=1, description="Only secrets carrying this tag, e.g. tenant")
    tag_values: list[str] = Field(default_factory=list, description="Only these values of the tag; empty = any")
    name_prefix: str | None = Field(default=None, description="Only secrets whose name starts with this")


class FoundSecret(ActionResult):
    name: str
    arn: str
    tag: str = Field(description="The value of tag_key on this secret")
    tags: dict[str, str]


class FindSecretsResult(ActionResult):
    secrets: list[FoundSecret] = Field(description="Sorted by tag value, then name")
    count: int
    missing_values: list[str] = Field(description="Requested tag values no secret carries")


def _find(ctx: ActionContext, params: FindSecretsParams) -> FindSecretsResult:
    sm = clients_for(ctx, params.account, region_of(ctx, params))("secretsmanager")
    filters: list[dict[str, Any]] = [{"Key": "tag-key", "Values": [params.tag_key]}]
    if params.name_prefix:
        filters.append({"Key": "name", "Values": [params.name_prefix]})
    wanted = set(params.tag_values)
    found: list[FoundSecret] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Filters": filters, "MaxResults": 100}
        if token:
            kwargs["NextToken"] = token
        with aws_call("secretsmanager", "ListSecrets"):
            page = sm.list_secrets(**kwargs)
        for s in page.get("SecretList", []):
            tags = tag_dict(s.get("Tags"))
            value = tags.get(params.tag_key)
            if value is None or (wanted and value not in wanted):
                continue
            if params.name_prefix and not str(s["Name"]).startswith(params.name_prefix):
                continue
            found.append(FoundSecret(name=s["Name"], arn=s["ARN"], tag=value, tags=tags))
        token = page.get("NextToken")
        if not token:
            break
    found.sort(key=lambda f: (f.tag, f.name))
    missing = sorted(wanted - {f.tag for f in found})
    return FindSecretsResult(secrets=found, count=len(found), missing_values=missing)


def _describe(ctx: ActionContext, params: FindSecretsParams) -> list[PlannedOperation]:
    which = f" in {', '.join(params.tag_values)}" if params.tag_values else ""
    return [PlannedOperation(service="secretsmanager", operation="ListSecrets", account=params.account,
                             region=params.region, note=f"read-only: secrets tagged {params.tag_key}{which}")]


FIND_SECRETS: ActionSpec[FindSecretsParams, FindSecretsResult] = ActionSpec(
    name="aws.secretsmanager.find_secrets",
    summary="List the Secrets Manager secrets carrying a tag (optionally given values), with their tags.",
    params=FindSecretsParams,
    result=FindSecretsResult,
    run=_find,
    mutating=False,
    idempotent=True,
    describe=_describe,
)
