"""aws.iam.deactivate_access_keys / reactivate_access_keys against moto over HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from integrations.aws import iam
from integrations.aws.session import clear_client_cache, clients_for
from integrations.base import ActionContext
from integrations.errors import DrillSafetyError, PermanentActionError, TransientActionError
from integrations.sandbox.faults import inject_fault
from integrations.sandbox.observe import access_key_statuses
from integrations.settings import StanchSettings

ACCOUNT = "222222222222"


def _user(settings: StanchSettings, user: str = "ci-app", keys: int = 2) -> list[str]:
    cli = clients_for(settings, ACCOUNT)("iam")
    cli.create_user(UserName=user)
    return sorted(cli.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"] for _ in range(keys))


def test_deactivate_all_keys(aws_settings: StanchSettings, make_ctx: Callable[..., ActionContext]) -> None:
    keys = _user(aws_settings)
    ctx = make_ctx()
    result = iam.DEACTIVATE.execute(ctx, {"account": ACCOUNT, "user": "ci-app"})
    assert result.deactivated == keys and result.already_inactive == []
    assert access_key_statuses(aws_settings.aws_endpoint_url or "", ACCOUNT, "ci-app") == dict.fromkeys(
        keys, "Inactive"
    )
    events = ctx.recorded  # type: ignore[attr-defined]
    # the before-image is recorded first, before any key changes
    assert events[0] == ("action.observed", {"subject": f"iam:{ACCOUNT}:user/ci-app",
                                             "state": {"statuses": dict.fromkeys(keys, "Active")}})
    events = events[1:]
    assert [e[1]["access_key_id"] for e in events] == keys
    assert "SecretAccessKey" not in json.dumps(events) and "secret" not in result.model_dump_json().lower()


def test_deactivate_is_idempotent(
    aws_settings: StanchSettings, make_ctx: Callable[..., ActionContext]
) -> None:
    keys = _user(aws_settings)
    iam.DEACTIVATE.execute(make_ctx(), {"account": ACCOUNT, "user": "ci-app"})
    again = iam.DEACTIVATE.execute(make_ctx(), {"account": ACCOUNT, "user": "ci-app"})
    assert again.deactivated == [] and again.already_inactive == keys


def test_unknown_user_is_permanent(
    aws_settings: StanchSettings, make_ctx: Callable[..., ActionContext]
) -> None:
    with pytest.raises(PermanentActionError) as err:
        iam.DEACTIVATE.execute(make_ctx(), {"account": ACCOUNT, "user": "nobody"})
    assert err.value.operation == "ListAccessKeys" and err.value.aws_code == "NoSuchEntity"
    assert "iam ListAccessKeys" in str(err.value) and "nobody" in str(err.value)


def test_throttling_is_transient_then_succeeds(
    aws_settings: StanchSettings, make_ctx: Callable[..., ActionContext]
) -> None:
    keys = _user(aws_settings)
    inject_fault(
        aws_settings.aws_endpoint_url or "", "UpdateAccessKey", status=400, code="Throttling", count=2
    )
    failures = 0
    for _ in range(3):  # the engine's retry loop, in miniature
        try:
            result = iam.DEACTIVATE.execute(make_ctx(), {"account": ACCOUNT, "user": "ci-app"})
            break
        except TransientActionError as exc:
            assert exc.operation == "UpdateAccessKey" and exc.aws_code == "Throttling"
            failures += 1
    assert failures == 2
    assert sorted(result.deactivated + result.already_inactive) == keys


def test_access_denied_names_the_permission(
    aws_settings: StanchSettings, make_ctx: Callable[..., ActionContext]
) -> None:
    _user(aws_settings)
    inject_fault(aws_settings.aws_endpoint_url or "", "UpdateAccessKey", status=403, code="AccessDenied")
    with pytest.raises(PermanentActionError) as err:
        iam.DEACTIVATE.execute(make_ctx(), {"account": ACCOUNT, "user": "ci-app"})
    assert "iam:UpdateAccessKey" in str(err.value) and err.value.aws_code == "AccessDenied"


def test_compensation_reactivates_only_what_it_deactivated(
    aws_settings: StanchSettings, make_ctx: Callable[..., ActionContext]
) -> None:
    first, second = _user(aws_settings)
    clients_for(aws_settings, ACCOUNT)("iam").update_access_key(
        UserName="ci-app", AccessKeyId=first, Status="Inactive"
    )
    params = iam.DeactivateKeysParams(account=ACCOUNT, user="ci-app")
    result = iam.DEACTIVATE.run(make_ctx(), params)
    assert result.deactivated == [second] and result.already_inactive == [first]
    assert iam.DEACTIVATE.compensation == iam.REACTIVATE.name
    assert iam.DEACTIVATE.compensation_params is not None
    undo = iam.DEACTIVATE.compensation_params(params, result)
    back = iam.REACTIVATE.execute(make_ctx(), undo)
    assert back.reactivated == [second]
    statuses = access_key_statuses(aws_settings.aws_endpoint_url or "", ACCOUNT, "ci-app")
    assert statuses == {first: "Inactive", second: "Active"}
    again = iam.REACTIVATE.execute(make_ctx(), {**undo, "key_ids": [second, "AKIADOESNOTEXIST0000"]})
    assert again.already_active == [second] and again.missing == ["AKIADOESNOTEXIST0000"]


def test_describe_reads_current_state(
    aws_settings: StanchSettings, make_ctx: Callable[..., ActionContext]
) -> None:
    keys = _user(aws_settings)
    assert iam.DEACTIVATE.describe is not None
    ops = iam.DEACTIVATE.describe(make_ctx(), iam.DeactivateKeysParams(account=ACCOUNT, user="ci-app"))
    assert [op.operation for op in ops] == ["UpdateAccessKey"]
    assert ops[0].resources == [f"user/ci-app/{k}" for k in keys]
    assert access_key_statuses(aws_settings.aws_endpoint_url or "", ACCOUNT, "ci-app") == dict.fromkeys(
        keys, "Active"
    )


def test_session_assumes_role_in_each_account(aws_settings: StanchSettings) -> None:
    clear_client_cache()  # force a fresh sts:AssumeRole per account
    for account in ("111111111111", "333333333333"):
        ident = clients_for(aws_settings, account)("sts").get_caller_identity()
        assert ident["Account"] == account
        assert ":assumed-role/StanchIncidentResponder/" in ident["Arn"]
    _user(aws_settings)
    other = clients_for(aws_settings, "111111111111")("iam").list_users()["Users"]
    assert other == []  # accounts are isolated


def test_drill_refuses_real_aws(tmp_path: object) -> None:
    ctx = ActionContext(
        incident_id="i", step_id="s", settings=StanchSettings(aws_endpoint_url=None), drill=True
    )
    with pytest.raises(DrillSafetyError):
        iam.DEACTIVATE.execute(ctx, {"account": ACCOUNT, "user": "ci-app"})


def test_params_are_strict() -> None:
    with pytest.raises(ValueError):
        iam.DEACTIVATE.validate_params({"account": ACCOUNT, "user": "u", "usr": "typo"})
    with pytest.raises(ValueError):
        iam.DEACTIVATE.validate_params({"account": "2222", "user": "u"})
