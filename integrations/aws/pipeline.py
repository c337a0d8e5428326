"""Start a CodePipeline run (e.g. rebuild and ship with the compromised dependency pinned out).

Owns: ``aws.codepipeline.start_execution``. The pipeline is looked up first (a missing pipeline is
a permanent error before anything starts); the run is started with ``clientRequestToken`` =
``uuid5(ctx.idempotency_token)`` — an idempotency token in the CodePipeline API model, so a
retried request does not start a second run. The result carries the execution id and the status
read right after the start; waiting for the run to finish is not this action's job.

moto 5.2.5 ignores ``clientRequestToken`` (every call starts a new execution) and marks runs
``Succeeded`` at once, so AWS's de-duplication is untested (docs/aws-actions.md).

No compensation: a pipeline run cannot be undone; rolling back is another deploy.
Must not touch: ``flows``, ``prefect``; the pipeline's definition.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from integrations.aws._common import AwsParams, region_of, safe_describe, token_uuid
from integrations.aws.errors import aws_call
from integrations.aws.session import clients_for
from integrations.base import ActionContext, ActionResult, ActionSpec, PlannedOperation

__all__ = ["START", "StartExecutionParams", "StartExecutionResult", "client_request_token"]


class StartExecutionParams(AwsParams):
    pipeline: str = Field(pattern=r"^[A-Za-z0-9.@\-_]{1,100}$")
    variables: dict[str, str] = Field(default_factory=dict, description="Pipeline variables (V2 pipelines)")


class StartExecutionResult(ActionResult):
    pipeline: str
    pipeline_version: int | None
    execution_id: str
    client_request_token: str
    status: str | None = Field(description="Status read right after the start (InProgress in AWS)")


def client_request_token(ctx: ActionContext) -> str:
    return token_uuid(ctx, "codepipeline-start")


def _version(cp: Any, pipeline: str) -> int | None:
    with aws_call("codepipeline", "GetPipeline"):
        meta = cp.get_pipeline(name=pipeline)["pipeline"]
    version = meta.get("version")
    return int(version) if version is not None else None


def _start(ctx: ActionContext, params: StartExecutionParams) -> StartExecutionResult:
    cp = clients_for(ctx, params.account, region_of(ctx, params))("codepipeline")
    version = _version(cp, params.pipeline)
    token = client_request_token(ctx)
    kwargs: dict[str, Any] = {"name": params.pipeline, "clientRequestToken": token}
    if params.variables:
        kwargs["variables"] = [{"name": k, "value": v} for k, v in params.variables.items()]
    with aws_call("codepipeline", "StartPipelineExecution"):
        execution_id = str(cp.start_pipeline_execution(**kwargs)["pipelineExecutionId"])
    with aws_call("codepipeline", "GetPipelineExecution"):
        status = cp.get_pipeline_execution(pipelineName=params.pipeline, pipelineExecutionId=execution_id)[
            "pipelineExecution"
        ].get("status")
    ctx.record(
        "aws.codepipeline.execution_started",
        {"pipeline": params.pipeline, "execution_id": execution_id, "client_request_token": token},
    )
    return StartExecutionResult(
        pipeline=params.pipeline,
        pipeline_version=version,
        execution_id=execution_id,
        client_request_token=token,
        status=status,
    )


def _plan(params: StartExecutionParams, note: str) -> list[PlannedOperation]:
    return [
        PlannedOperation(
            service="codepipeline",
            operation="StartPipelineExecution",
            account=params.account,
            region=params.region,
            resources=[params.pipeline],
            note=note,
        )
    ]


def _describe(ctx: ActionContext, params: StartExecutionParams) -> list[PlannedOperation]:
    version = _version(clients_for(ctx, params.account, region_of(ctx, params))("codepipeline"), params.pipeline)
    return _plan(params, f"pipeline version {version}; idempotency token {client_request_token(ctx)}")


def _describe_blind(ctx: ActionContext, params: StartExecutionParams) -> list[PlannedOperation]:
    return _plan(params, f"idempotency token {client_request_token(ctx)}")


START: ActionSpec[StartExecutionParams, StartExecutionResult] = ActionSpec(
    name="aws.codepipeline.start_execution",
    summary="Start a CodePipeline execution (with an idempotency token derived from the step).",
    params=StartExecutionParams,
    result=StartExecutionResult,
    run=_start,
    mutating=True,
    idempotent=True,
    describe=safe_describe(_describe, _describe_blind),
)
