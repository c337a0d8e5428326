"""aws.ecs.force_deployment / restore_task_definition against moto over HTTP.

moto simplification: a forced deployment changes the deployment id in place (no second
ACTIVE/PRIMARY deployment as in AWS), so tests assert on the id and the task definition.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from integrations.aws import ecs
from integrations.base import ActionContext
from integrations.errors import PermanentActionError
from integrations.sandbox.faults import inject_fault
from integrations.settings import StanchSettings

ACCOUNT = "222222222222"


def _task_def(cli: Any, image: str) -> str:
    return str(
        cli.register_task_definition(
            family="web", containerDefinitions=[{"name": "web", "image": image, "memory": 256}]
        )["taskDefinition"]["taskDefinitionArn"]
    )


def _service(cli: Any) -> tuple[str, str]:
    cli.create_cluster(clusterName="prod")
    v1 = _task_def(cli, "web:4.2.0")
    v2 = _task_def(cli, "web:4.2.1")
    cli.create_service(cluster="prod", serviceName="web", taskDefinition=v1, desiredCount=2)
    return v1, v2


def _running(cli: Any) -> dict[str, Any]:
    return dict(cli.describe_services(cluster="prod", services=["web"])["services"][0])


def test_force_new_task_definition_and_restore(
    clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]
) -> None:
    cli = clients("ecs")
    v1, v2 = _service(cli)
    before = _running(cli)["deployments"][0]["id"]
    params = {"account": ACCOUNT, "cluster": "prod", "service": "web", "task_definition": "web:2"}
    result = ecs.FORCE.execute(make_ctx(step_id="roll"), params)
    assert result.forced and (result.previous_task_definition, result.task_definition) == (v1, v2)
    svc = _running(cli)
    assert svc["taskDefinition"] == v2 and svc["deployments"][0]["id"] != before

    again = ecs.FORCE.execute(make_ctx(step_id="roll"), params)
    assert not again.forced and again.previous_task_definition == v1
    assert _running(cli)["deployments"][0]["id"] == svc["deployments"][0]["id"]  # not rolled twice

    spec = ecs.FORCE
    assert spec.compensation == ecs.RESTORE.name and spec.compensation_params is not None
    undo = spec.compensation_params(spec.validate_params(params), result)
    assert ecs.RESTORE.execute(make_ctx(), undo).restored and _running(cli)["taskDefinition"] == v1
    assert not ecs.RESTORE.execute(make_ctx(), undo).restored


def test_plain_restart_has_nothing_to_undo(
    clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]
) -> None:
    cli = clients("ecs")
    v1, _ = _service(cli)
    params = {"account": ACCOUNT, "cluster": "prod", "service": "web"}
    result = ecs.FORCE.execute(make_ctx(), params)
    assert result.forced and result.task_definition == result.previous_task_definition == v1
    assert ecs.FORCE.compensation_params is not None
    assert ecs.RESTORE.execute(
        make_ctx(), ecs.FORCE.compensation_params(ecs.FORCE.validate_params(params), result)
    ).skipped


def test_missing_service_is_permanent(clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]) -> None:
    _service(clients("ecs"))
    with pytest.raises(PermanentActionError) as err:
        ecs.FORCE.execute(make_ctx(), {"account": ACCOUNT, "cluster": "prod", "service": "nope"})
    assert err.value.operation == "DescribeServices"


def test_access_denied_and_throttling(
    aws_settings: StanchSettings,
    clients: Callable[[str], Any],
    make_ctx: Callable[..., ActionContext],
    engine_retry: Callable[..., Any],
) -> None:
    cli = clients("ecs")
    _, v2 = _service(cli)
    ep = aws_settings.aws_endpoint_url or ""
    params = {"account": ACCOUNT, "cluster": "prod", "service": "web", "task_definition": v2}
    inject_fault(ep, "UpdateService", code="AccessDeniedException", count=1)
    with pytest.raises(PermanentActionError) as err:
        ecs.FORCE.execute(make_ctx(), params)
    assert "missing permission ecs:UpdateService" in str(err.value)
    inject_fault(ep, "UpdateService", code="ThrottlingException", count=1)
    result, failures = engine_retry(lambda: ecs.FORCE.execute(make_ctx(), params))
    assert len(failures) == 1 and result.forced and _running(cli)["taskDefinition"] == v2
