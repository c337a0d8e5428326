"""Roll an ECS service onto fresh tasks (optionally a new task definition), and roll it back.

Owns: ``aws.ecs.force_deployment`` (``UpdateService(forceNewDeployment=True[, taskDefinition])``:
replaces every task, so containers pick up rotated secrets or a patched image tag) and its
compensation ``aws.ecs.restore_task_definition`` (back to the task definition the service ran
before, only while the service still runs ours; a plain restart has nothing to undo).

Idempotency: after the update the service is tagged ``stanch:deployment-token`` =
``uuid5(ctx.idempotency_token)`` and ``stanch:previous-task-definition``. A re-run that finds its
token does not roll the service again. A crash between the update and the tag means one extra
rolling restart on re-run — harmless, and the only window. (Tagging needs the long ECS ARN format,
the default for accounts since 2021.)

Must not touch: ``flows``, ``prefect``; desired counts, capacity, networking, the cluster.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from integrations.aws._common import SKIP_REASON_DOC, AwsParams, region_of, safe_describe, token_uuid, where
from integrations.aws.errors import aws_call
from integrations.aws.session import clients_for
from integrations.base import ActionContext, ActionResult, ActionSpec, PlannedOperation
from integrations.errors import PermanentActionError

__all__ = [
    "FORCE",
    "RESTORE",
    "ForceDeploymentParams",
    "ForceDeploymentResult",
    "RestoreTaskDefinitionParams",
    "RestoreTaskDefinitionResult",
]

_TOKEN, _PREVIOUS = "stanch:deployment-token", "stanch:previous-task-definition"


class ForceDeploymentParams(AwsParams):
    cluster: str = Field(min_length=1)
    service: str = Field(min_length=1)
    task_definition: str | None = Field(
        default=None, description="family:revision or ARN to deploy; None = restart on the current one"
    )


class ForceDeploymentResult(ActionResult):
    cluster: str
    service: str
    service_arn: str
    task_definition: str = Field(description="Task definition ARN the service runs after this step")
    previous_task_definition: str
    deployment_id: str | None
    forced: bool = Field(description="False when this step's deployment had already been made")


class RestoreTaskDefinitionParams(AwsParams):
    cluster: str = Field(min_length=1)
    service: str = Field(min_length=1)
    task_definition: str = Field(min_length=1, description="Task definition to go back to")
    expected_task_definition: str | None = Field(default=None, description="Only while the service runs this one")
    skip_reason: str | None = Field(default=None, description=SKIP_REASON_DOC)


class RestoreTaskDefinitionResult(ActionResult):
    cluster: str
    service: str
    task_definition: str
    restored: bool
    skipped: str | None = None


def _service(ecs: Any, cluster: str, service: str) -> dict[str, Any]:
    with aws_call("ecs", "DescribeServices"):
        resp = ecs.describe_services(cluster=cluster, services=[service], include=["TAGS"])
    found = [s for s in resp.get("services", []) if s.get("status") != "INACTIVE"]
    if not found:
        reason = (resp.get("failures") or [{}])[0].get("reason", "MISSING")
        raise PermanentActionError(
            f"ecs service {service!r} in cluster {cluster!r}: {reason}",
            operation="DescribeServices",
            aws_code="ServiceNotFoundException",
        )
    return dict(found[0])


def _tags(ecs: Any, svc: dict[str, Any]) -> dict[str, str]:
    tags = svc.get("tags")
    if tags is None:
        with aws_call("ecs", "ListTagsForResource"):
            tags = ecs.list_tags_for_resource(resourceArn=svc["serviceArn"]).get("tags", [])
    return {t["key"]: t["value"] for t in tags or []}


def _task_definition_arn(ecs: Any, ref: str) -> str:
    with aws_call("ecs", "DescribeTaskDefinition"):
        return str(ecs.describe_task_definition(taskDefinition=ref)["taskDefinition"]["taskDefinitionArn"])


def _primary_deployment(svc: dict[str, Any]) -> str | None:
    deployments = svc.get("deployments") or []
    primary = next((d for d in deployments if d.get("status") == "PRIMARY"), deployments[0] if deployments else None)
    return primary.get("id") if primary else None


def _force(ctx: ActionContext, params: ForceDeploymentParams) -> ForceDeploymentResult:
    ecs = clients_for(ctx, params.account, region_of(ctx, params))("ecs")
    token = token_uuid(ctx, "ecs-deployment")
    svc = _service(ecs, params.cluster, params.service)
    tags = _tags(ecs, svc)
    base = {"cluster": params.cluster, "service": params.service, "service_arn": svc["serviceArn"]}
    if tags.get(_TOKEN) == token:
        return ForceDeploymentResult(
            **base,
            task_definition=svc["taskDefinition"],
            previous_task_definition=tags.get(_PREVIOUS, svc["taskDefinition"]),
            deployment_id=_primary_deployment(svc),
            forced=False,
        )
    previous = svc["taskDefinition"]
    target = _task_definition_arn(ecs, params.task_definition) if params.task_definition else previous
    with aws_call("ecs", "UpdateService"):
        updated = ecs.update_service(
            cluster=params.cluster, service=params.service, taskDefinition=target, forceNewDeployment=True
        )["service"]
    with aws_call("ecs", "TagResource"):
        ecs.tag_resource(
            resourceArn=svc["serviceArn"],
            tags=[{"key": _TOKEN, "value": token}, {"key": _PREVIOUS, "value": previous}],
        )
    deployment = _primary_deployment(updated)
    ctx.record(
        "aws.ecs.deployment_forced",
        {**base, "task_definition": target, "previous_task_definition": previous, "deployment_id": deployment},
    )
    return ForceDeploymentResult(
        **base, task_definition=target, previous_task_definition=previous, deployment_id=deployment, forced=True
    )


def _plan(params: ForceDeploymentParams, note: str) -> list[PlannedOperation]:
    return [
        PlannedOperation(
            service="ecs",
            operation="UpdateService",
            account=params.account,
            region=params.region,
            resources=[f"{params.cluster}/{params.service}"],
            note=note,
        )
    ]


def _describe(ctx: ActionContext, params: ForceDeploymentParams) -> list[PlannedOperation]:
    svc = _service(clients_for(ctx, params.account, region_of(ctx, params))("ecs"), params.cluster, params.service)
    now = svc["taskDefinition"].rsplit("/", 1)[-1]
    target = f"-> {params.task_definition}" if params.task_definition else "(same task definition)"
    return _plan(params, f"replace all {svc.get('runningCount', '?')} running task(s); {now} {target}")


def _describe_blind(ctx: ActionContext, params: ForceDeploymentParams) -> list[PlannedOperation]:
    return _plan(params, f"force a new deployment{f' of {params.task_definition}' if params.task_definition else ''}")


def _restore(ctx: ActionContext, params: RestoreTaskDefinitionParams) -> RestoreTaskDefinitionResult:
    base = {"cluster": params.cluster, "service": params.service}
    if params.skip_reason:
        return RestoreTaskDefinitionResult(
            **base, task_definition=params.task_definition, restored=False, skipped=params.skip_reason
        )
    ecs = clients_for(ctx, params.account, region_of(ctx, params))("ecs")
    current = _service(ecs, params.cluster, params.service)["taskDefinition"]
    target = _task_definition_arn(ecs, params.task_definition)
    if current == target:
        return RestoreTaskDefinitionResult(**base, task_definition=current, restored=False)
    if params.expected_task_definition is not None and current != params.expected_task_definition:
        return RestoreTaskDefinitionResult(
            **base,
            task_definition=current,
            restored=False,
            skipped=f"service runs {current}, not ours ({params.expected_task_definition}): left alone",
        )
    with aws_call("ecs", "UpdateService"):
        ecs.update_service(cluster=params.cluster, service=params.service, taskDefinition=target)
    ctx.record("aws.ecs.task_definition_restored", {**base, "task_definition": target, "replaced": current})
    return RestoreTaskDefinitionResult(**base, task_definition=target, restored=True)


def _describe_restore(ctx: ActionContext, params: RestoreTaskDefinitionParams) -> list[PlannedOperation]:
    if params.skip_reason:
        return []
    return [
        PlannedOperation(
            service="ecs",
            operation="UpdateService",
            account=params.account,
            region=params.region,
            resources=[f"{params.cluster}/{params.service}"],
            note=f"back to {params.task_definition}",
        )
    ]


def _compensation_params(params: ForceDeploymentParams, result: ForceDeploymentResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        **where(params),
        "cluster": params.cluster,
        "service": params.service,
        "task_definition": result.previous_task_definition,
        "expected_task_definition": result.task_definition,
    }
    if result.task_definition == result.previous_task_definition:
        out["skip_reason"] = "a restart on the same task definition has nothing to undo"
    return out


FORCE: ActionSpec[ForceDeploymentParams, ForceDeploymentResult] = ActionSpec(
    name="aws.ecs.force_deployment",
    summary="Force a new deployment of an ECS service (fresh tasks), optionally on a new task definition.",
    params=ForceDeploymentParams,
    result=ForceDeploymentResult,
    run=_force,
    mutating=True,
    idempotent=True,
    describe=safe_describe(_describe, _describe_blind),
    compensation="aws.ecs.restore_task_definition",
    compensation_params=_compensation_params,
)

RESTORE: ActionSpec[RestoreTaskDefinitionParams, RestoreTaskDefinitionResult] = ActionSpec(
    name="aws.ecs.restore_task_definition",
    summary="Put an ECS service back on an earlier task definition (undo of force_deployment).",
    params=RestoreTaskDefinitionParams,
    result=RestoreTaskDefinitionResult,
    run=_restore,
    mutating=True,
    idempotent=True,
    describe=_describe_restore,
)
