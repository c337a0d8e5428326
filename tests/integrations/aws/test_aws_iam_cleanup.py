"""aws.iam.delete_access_keys / remove_login_profile against moto over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from integrations.aws import iam_cleanup
from integrations.base import ActionContext
from integrations.errors import PermanentActionError
from integrations.sandbox.faults import inject_fault
from integrations.settings import StanchSettings

ACCOUNT = "222222222222"


def _user(iam: Any, user: str = "ci-app", keys: int = 2) -> list[str]:
    iam.create_user(UserName=user)
    return sorted(iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"] for _ in range(keys))


def _keys(iam: Any, user: str = "ci-app") -> dict[str, str]:
    return {k["AccessKeyId"]: k["Status"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]}


def test_deletes_only_inactive_keys(clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]) -> None:
    iam = clients("iam")
    inactive, active = _user(iam)
    iam.update_access_key(UserName="ci-app", AccessKeyId=inactive, Status="Inactive")
    ctx = make_ctx()
    result = iam_cleanup.DELETE_KEYS.execute(ctx, {"account": ACCOUNT, "user": "ci-app"})
    assert (result.deleted, result.skipped_active, result.already_deleted) == ([inactive], [active], [])
    assert _keys(iam) == {active: "Active"}
    assert [e[1]["access_key_id"] for e in ctx.recorded] == [inactive]  # type: ignore[attr-defined]
    assert iam_cleanup.DELETE_KEYS.compensation is None


def test_force_and_idempotent_rerun(clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]) -> None:
    iam = clients("iam")
    keys = _user(iam)
    params = {"account": ACCOUNT, "user": "ci-app", "key_ids": keys, "force": True}
    first = iam_cleanup.DELETE_KEYS.execute(make_ctx(), params)
    assert first.deleted == keys and _keys(iam) == {}
    again = iam_cleanup.DELETE_KEYS.execute(make_ctx(), params)
    assert again.deleted == [] and again.already_deleted == keys


def test_unknown_user_is_permanent(aws_settings: StanchSettings, make_ctx: Callable[..., ActionContext]) -> None:
    with pytest.raises(PermanentActionError) as err:
        iam_cleanup.DELETE_KEYS.execute(make_ctx(), {"account": ACCOUNT, "user": "nobody"})
    assert err.value.aws_code == "NoSuchEntity"


def test_access_denied_names_permission(
    aws_settings: StanchSettings, clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]
) -> None:
    _user(clients("iam"))
    inject_fault(aws_settings.aws_endpoint_url or "", "DeleteAccessKey", status=403, code="AccessDenied")
    with pytest.raises(PermanentActionError) as err:
        iam_cleanup.DELETE_KEYS.execute(make_ctx(), {"account": ACCOUNT, "user": "ci-app", "force": True})
    assert "iam:DeleteAccessKey" in str(err.value)


def test_throttled_then_success(
    aws_settings: StanchSettings,
    clients: Callable[[str], Any],
    make_ctx: Callable[..., ActionContext],
    engine_retry: Callable[..., Any],
) -> None:
    iam = clients("iam")
    keys = _user(iam)
    inject_fault(aws_settings.aws_endpoint_url or "", "DeleteAccessKey", code="Throttling", count=2)
    params = {"account": ACCOUNT, "user": "ci-app", "force": True}
    result, failures = engine_retry(lambda: iam_cleanup.DELETE_KEYS.execute(make_ctx(), params))
    assert len(failures) == 2 and failures[0].operation == "DeleteAccessKey"
    assert result.deleted == keys and _keys(iam) == {}


def test_describe_is_read_only(clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]) -> None:
    iam = clients("iam")
    first, second = _user(iam)
    iam.update_access_key(UserName="ci-app", AccessKeyId=first, Status="Inactive")
    assert iam_cleanup.DELETE_KEYS.describe is not None
    ops = iam_cleanup.DELETE_KEYS.describe(make_ctx(), iam_cleanup.DeleteKeysParams(account=ACCOUNT, user="ci-app"))
    assert ops[0].resources == [f"user/ci-app/{first}"] and second in (ops[0].note or "")
    assert len(_keys(iam)) == 2


def test_remove_login_profile(
    aws_settings: StanchSettings,
    clients: Callable[[str], Any],
    make_ctx: Callable[..., ActionContext],
    engine_retry: Callable[..., Any],
) -> None:
    iam = clients("iam")
    iam.create_user(UserName="alice")
    iam.create_login_profile(UserName="alice", Password="Sup3r-secret-pw!")
    inject_fault(aws_settings.aws_endpoint_url or "", "DeleteLoginProfile", code="Throttling", count=1)
    params = {"account": ACCOUNT, "user": "alice"}
    result, failures = engine_retry(lambda: iam_cleanup.REMOVE_LOGIN_PROFILE.execute(make_ctx(), params))
    assert len(failures) == 1 and result.removed
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_login_profile(UserName="alice")
    again = iam_cleanup.REMOVE_LOGIN_PROFILE.execute(make_ctx(), params)
    assert not again.removed  # no password any more: success, nothing done


def test_remove_login_profile_unknown_user_is_permanent(
    aws_settings: StanchSettings, make_ctx: Callable[..., ActionContext]
) -> None:
    with pytest.raises(PermanentActionError) as err:
        iam_cleanup.REMOVE_LOGIN_PROFILE.execute(make_ctx(), {"account": ACCOUNT, "user": "ghost"})
    assert err.value.aws_code == "NoSuchEntity" and err.value.operation == "GetLoginProfile"
