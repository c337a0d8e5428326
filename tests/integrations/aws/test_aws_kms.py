"""aws.kms.disable_key / enable_key / schedule_key_deletion / cancel_key_deletion against moto."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from integrations.aws import kms
from integrations.base import ActionContext
from integrations.errors import PermanentActionError
from integrations.sandbox.faults import inject_fault
from integrations.settings import StanchSettings

ACCOUNT = "222222222222"


def _state(cli: Any, key_id: str) -> str:
    return str(cli.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"])


def _undo(spec: Any, params: dict[str, Any], result: Any) -> dict[str, Any]:
    assert spec.compensation_params is not None
    return dict(spec.compensation_params(spec.validate_params(params), result))


def test_disable_enable_roundtrip(clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]) -> None:
    cli = clients("kms")
    key_id = cli.create_key(Description="app data key")["KeyMetadata"]["KeyId"]
    params = {"account": ACCOUNT, "key_id": key_id}
    result = kms.DISABLE.execute(make_ctx(), params)
    assert result.changed and (result.previous_state, result.state) == ("Enabled", "Disabled")
    assert _state(cli, key_id) == "Disabled"
    again = kms.DISABLE.execute(make_ctx(), params)
    assert not again.changed and again.state == "Disabled"
    # the undo of the no-op run does nothing; the undo of the real one enables
    assert kms.ENABLE.execute(make_ctx(), _undo(kms.DISABLE, params, again)).skipped
    assert _state(cli, key_id) == "Disabled"
    assert kms.ENABLE.execute(make_ctx(), _undo(kms.DISABLE, params, result)).changed
    assert _state(cli, key_id) == "Enabled"


def test_schedule_and_cancel_deletion(clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]) -> None:
    cli = clients("kms")
    key_id = cli.create_key()["KeyMetadata"]["KeyId"]
    params = {"account": ACCOUNT, "key_id": key_id, "pending_window_days": 7}
    result = kms.SCHEDULE_DELETION.execute(make_ctx(), params)
    assert result.changed and result.state == "PendingDeletion" and result.deletion_date is not None
    assert not kms.SCHEDULE_DELETION.execute(make_ctx(), params).changed
    back = kms.CANCEL_DELETION.execute(make_ctx(), _undo(kms.SCHEDULE_DELETION, params, result))
    assert back.changed and _state(cli, key_id) == "Enabled"  # it was Enabled before: enabled again
    with pytest.raises(ValueError):
        kms.SCHEDULE_DELETION.validate_params({**params, "pending_window_days": 3})


def test_missing_key_is_permanent(aws_settings: StanchSettings, make_ctx: Callable[..., ActionContext]) -> None:
    with pytest.raises(PermanentActionError) as err:
        kms.DISABLE.execute(make_ctx(), {"account": ACCOUNT, "key_id": "11111111-2222-3333-4444-555555555555"})
    assert err.value.aws_code == "NotFoundException" and err.value.operation == "DescribeKey"


def test_access_denied_and_throttling(
    aws_settings: StanchSettings,
    clients: Callable[[str], Any],
    make_ctx: Callable[..., ActionContext],
    engine_retry: Callable[..., Any],
) -> None:
    cli = clients("kms")
    key_id = cli.create_key()["KeyMetadata"]["KeyId"]
    ep = aws_settings.aws_endpoint_url or ""
    inject_fault(ep, "DisableKey", code="AccessDeniedException", count=1)
    with pytest.raises(PermanentActionError) as err:
        kms.DISABLE.execute(make_ctx(), {"account": ACCOUNT, "key_id": key_id})
    assert "missing permission kms:DisableKey" in str(err.value)
    inject_fault(ep, "ScheduleKeyDeletion", code="ThrottlingException", count=1)
    result, failures = engine_retry(
        lambda: kms.SCHEDULE_DELETION.execute(make_ctx(), {"account": ACCOUNT, "key_id": key_id})
    )
    assert len(failures) == 1 and result.changed and _state(cli, key_id) == "PendingDeletion"


def test_describe_reads_state(clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]) -> None:
    key_id = clients("kms").create_key()["KeyMetadata"]["KeyId"]
    assert kms.DISABLE.describe is not None
    ops = kms.DISABLE.describe(make_ctx(), kms.KeyParams(account=ACCOUNT, key_id=key_id))
    assert ops[0].operation == "DisableKey" and "now Enabled" in (ops[0].note or "")
