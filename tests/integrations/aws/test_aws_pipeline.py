"""aws.codepipeline.start_execution against moto over HTTP.

moto ignores ``clientRequestToken`` (every start is a new execution) and marks executions
Succeeded at once; the tests check that a re-run sends the *same* token, which is what makes AWS
de-duplicate it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from integrations.aws import pipeline
from integrations.base import ActionContext
from integrations.errors import PermanentActionError
from integrations.sandbox.faults import inject_fault
from integrations.settings import StanchSettings

ACCOUNT = "222222222222"
# moto quirk: the trust policy's Service principal must be a string, not a list
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "codepipeline.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)


def _stage(name: str, category: str, provider: str, cfg: dict[str, str]) -> dict[str, Any]:
    io = {"outputArtifacts": [{"name": "src"}]} if category == "Source" else {"inputArtifacts": [{"name": "src"}]}
    action = {
        "name": name,
        "actionTypeId": {"category": category, "owner": "AWS", "provider": provider, "version": "1"},
        "configuration": cfg,
        **io,
    }
    return {"name": name, "actions": [action]}


def _pipeline(clients: Callable[[str], Any]) -> None:
    role = clients("iam").create_role(RoleName="pipeline", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    clients("codepipeline").create_pipeline(
        pipeline={
            "name": "desktop-app-release",
            "roleArn": role,
            "artifactStore": {"type": "S3", "location": "artifacts"},
            "stages": [
                _stage("Source", "Source", "S3", {"S3Bucket": "b", "S3ObjectKey": "k"}),
                _stage("Build", "Build", "CodeBuild", {"ProjectName": "p"}),
            ],
        }
    )


def test_start_sends_a_stable_token(clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]) -> None:
    _pipeline(clients)
    cp = clients("codepipeline")
    sent: list[str] = []
    cp.meta.events.register(
        "provide-client-params.codepipeline.StartPipelineExecution",
        lambda params, **_: sent.append(params["clientRequestToken"]),
    )
    params = {"account": ACCOUNT, "pipeline": "desktop-app-release"}
    result = pipeline.START.execute(make_ctx(step_id="rebuild"), params)
    assert result.execution_id and result.status in {"InProgress", "Succeeded"} and result.pipeline_version == 1
    listed = cp.list_pipeline_executions(pipelineName="desktop-app-release")["pipelineExecutionSummaries"]
    assert [e["pipelineExecutionId"] for e in listed] == [result.execution_id]
    again = pipeline.START.execute(make_ctx(step_id="rebuild"), params)
    assert again.client_request_token == result.client_request_token == sent[0] == sent[1]
    other = pipeline.START.execute(make_ctx(step_id="rebuild-2"), params)
    assert other.client_request_token != result.client_request_token


def test_missing_pipeline_is_permanent(aws_settings: StanchSettings, make_ctx: Callable[..., ActionContext]) -> None:
    with pytest.raises(PermanentActionError) as err:
        pipeline.START.execute(make_ctx(), {"account": ACCOUNT, "pipeline": "nope"})
    assert err.value.aws_code == "PipelineNotFoundException" and err.value.operation == "GetPipeline"


def test_access_denied_and_throttling(
    aws_settings: StanchSettings,
    clients: Callable[[str], Any],
    make_ctx: Callable[..., ActionContext],
    engine_retry: Callable[..., Any],
) -> None:
    _pipeline(clients)
    ep = aws_settings.aws_endpoint_url or ""
    params = {"account": ACCOUNT, "pipeline": "desktop-app-release"}
    inject_fault(ep, "StartPipelineExecution", code="AccessDeniedException", count=1)
    with pytest.raises(PermanentActionError) as err:
        pipeline.START.execute(make_ctx(), params)
    assert "missing permission codepipeline:StartPipelineExecution" in str(err.value)
    inject_fault(ep, "StartPipelineExecution", code="ThrottlingException", count=2)
    result, failures = engine_retry(lambda: pipeline.START.execute(make_ctx(), params))
    assert len(failures) == 2 and result.execution_id
