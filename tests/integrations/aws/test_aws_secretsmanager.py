"""aws.secretsmanager.rotate_secret / restore_secret_version against moto over HTTP.

moto quirk: ``UpdateSecretVersionStage`` does not move moto's default version, so reads after the
restore ask for ``VersionStage="AWSCURRENT"`` explicitly (what real AWS returns by default).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from integrations.aws import secretsmanager
from integrations.base import ActionContext
from integrations.errors import PermanentActionError
from integrations.sandbox.faults import inject_fault
from integrations.settings import StanchSettings

ACCOUNT = "222222222222"


def _current(sm: Any, name: str = "app/db") -> tuple[str, str]:
    resp = sm.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")
    return resp["VersionId"], resp["SecretString"]


def test_rotate_random_and_restore(clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]) -> None:
    sm = clients("secretsmanager")
    old_version = sm.create_secret(Name="app/db", SecretString="hunter2")["VersionId"]
    ctx = make_ctx(step_id="rotate-db")
    result = secretsmanager.ROTATE.execute(ctx, {"account": ACCOUNT, "secret_id": "app/db", "length": 40})
    version, value = _current(sm)
    assert result.rotated and result.current and result.version_id == version
    assert result.previous_version_id == old_version and len(value) == 40 and value != "hunter2"
    assert set(value) <= set(secretsmanager.ALPHABET)
    assert value in ctx.secrets  # redacted, and never in the result or the timeline
    assert value not in result.model_dump_json() and value not in json.dumps(ctx.recorded)  # type: ignore[attr-defined]

    again = secretsmanager.ROTATE.execute(make_ctx(step_id="rotate-db"), {"account": ACCOUNT, "secret_id": "app/db"})
    assert not again.rotated and again.version_id == version and again.previous_version_id == old_version
    assert _current(sm) == (version, value)

    spec = secretsmanager.ROTATE
    assert spec.compensation == secretsmanager.RESTORE.name and spec.compensation_params is not None
    undo = spec.compensation_params(spec.validate_params({"account": ACCOUNT, "secret_id": "app/db"}), result)
    assert secretsmanager.RESTORE.execute(make_ctx(), undo).restored
    assert _current(sm) == (old_version, "hunter2")
    assert not secretsmanager.RESTORE.execute(make_ctx(), undo).restored  # already back: success


def test_provided_value_in_json_key(clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]) -> None:
    sm = clients("secretsmanager")
    sm.create_secret(Name="app/db", SecretString=json.dumps({"username": "app", "password": "old"}))
    ctx = make_ctx()
    params = {
        "account": ACCOUNT,
        "secret_id": "app/db",
        "new_value_from": "provided",
        "value": "n3w-Passw0rd-value",
        "json_key": "password",
    }
    secretsmanager.ROTATE.execute(ctx, params)
    assert json.loads(_current(sm)[1]) == {"username": "app", "password": "n3w-Passw0rd-value"}
    assert "n3w-Passw0rd-value" in ctx.secrets
    assert "n3w-Passw0rd-value" not in repr(secretsmanager.ROTATE.validate_params(params))
    with pytest.raises(ValueError):
        secretsmanager.ROTATE.validate_params({"account": ACCOUNT, "secret_id": "x", "new_value_from": "provided"})


def test_restore_leaves_a_newer_rotation_alone(
    clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]
) -> None:
    sm = clients("secretsmanager")
    sm.create_secret(Name="app/db", SecretString="v1")
    params = {"account": ACCOUNT, "secret_id": "app/db"}
    result = secretsmanager.ROTATE.execute(make_ctx(), params)
    newer = sm.put_secret_value(SecretId="app/db", SecretString="v3")["VersionId"]
    assert secretsmanager.ROTATE.compensation_params is not None
    undo = secretsmanager.ROTATE.compensation_params(secretsmanager.ROTATE.validate_params(params), result)
    back = secretsmanager.RESTORE.execute(make_ctx(), undo)
    assert not back.restored and back.skipped and _current(sm)[0] == newer


def test_missing_secret_is_permanent(aws_settings: StanchSettings, make_ctx: Callable[..., ActionContext]) -> None:
    with pytest.raises(PermanentActionError) as err:
        secretsmanager.ROTATE.execute(make_ctx(), {"account": ACCOUNT, "secret_id": "nope"})
    assert err.value.aws_code == "ResourceNotFoundException" and err.value.operation == "DescribeSecret"


def test_access_denied_and_throttling(
    aws_settings: StanchSettings,
    clients: Callable[[str], Any],
    make_ctx: Callable[..., ActionContext],
    engine_retry: Callable[..., Any],
) -> None:
    sm = clients("secretsmanager")
    sm.create_secret(Name="app/db", SecretString="v1")
    ep = aws_settings.aws_endpoint_url or ""
    params = {"account": ACCOUNT, "secret_id": "app/db"}
    rule = inject_fault(ep, "PutSecretValue", status=400, code="AccessDeniedException", count=1)
    with pytest.raises(PermanentActionError) as err:
        secretsmanager.ROTATE.execute(make_ctx(), params)
    assert "secretsmanager:PutSecretValue" in str(err.value) and rule
    inject_fault(ep, "PutSecretValue", code="ThrottlingException", count=2)
    result, failures = engine_retry(lambda: secretsmanager.ROTATE.execute(make_ctx(), params))
    assert len(failures) == 2 and result.rotated and _current(sm)[0] == result.version_id
