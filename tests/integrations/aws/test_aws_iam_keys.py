"""aws.iam.find_access_key / deactivate_access_key / attach|detach_deny_all_policy /
replace_access_key (+ revert) and aws.secretsmanager.find_secrets against moto over HTTP:
success, idempotent re-run, permanent error, transient then success."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from integrations.aws import iam_keys, iam_replace, secrets_inventory
from integrations.aws.session import clients_for
from integrations.base import ActionContext
from integrations.errors import PermanentActionError
from integrations.sandbox.faults import inject_fault
from integrations.settings import StanchSettings

ACCOUNT = "222222222222"
OTHER = "111111111111"


def _user(iam: Any, user: str = "deploy", keys: int = 2) -> list[str]:
    iam.create_user(UserName=user)
    return [iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"] for _ in range(keys)]


def _with_history(ctx: ActionContext) -> ActionContext:
    """The engine's wiring: ``history`` sees what earlier attempts of this step recorded."""
    recorded: list[tuple[str, dict[str, Any]]] = ctx.recorded  # type: ignore[attr-defined]
    ctx.history = lambda kind: [d for k, d in recorded if k == kind]
    return ctx


def _keys(iam: Any, user: str = "deploy") -> dict[str, str]:
    return {k["AccessKeyId"]: k["Status"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]}


def test_find_key_across_accounts_and_missing_key(
    aws_settings: StanchSettings, clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext],
    engine_retry: Callable[..., Any],
) -> None:
    other = clients_for(aws_settings, OTHER)("iam")
    _user(other, "someone", 1)
    _user(other, "deploy", 1)  # same user name in another account: must not be taken for the owner
    leaked, second = _user(clients("iam"))
    params = {"access_key_id": leaked, "accounts": [OTHER, ACCOUNT]}
    inject_fault(aws_settings.aws_endpoint_url or "", "ListAccessKeys", code="Throttling", count=1)
    result, failures = engine_retry(lambda: iam_keys.FIND_KEY.execute(make_ctx(), params))
    assert len(failures) == 1
    assert (result.account, result.user, result.status) == (ACCOUNT, "deploy", "Active")
    assert result.other_keys == [second] and result.accounts_searched == [OTHER, ACCOUNT]
    assert iam_keys.FIND_KEY.mutating is False
    again = iam_keys.FIND_KEY.execute(make_ctx(), params)
    assert again.account == ACCOUNT and again.user == "deploy"
    with pytest.raises(PermanentActionError, match="belongs to no IAM user of the 2 account"):
        iam_keys.FIND_KEY.execute(make_ctx(), {"access_key_id": "AKIA" + "Z" * 16, "accounts": [OTHER, ACCOUNT]})
    with pytest.raises(PermanentActionError, match="not found"):  # accounts from an inventory that is not there
        iam_keys.FIND_KEY.execute(make_ctx(), {"access_key_id": leaked, "inventory": "/nonexistent/inventory.yaml"})


def test_deactivate_exactly_one_key_rerun_and_compensation(
    clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext], aws_settings: StanchSettings,
    engine_retry: Callable[..., Any],
) -> None:
    iam = clients("iam")
    leaked, other = _user(iam)
    params = {"account": ACCOUNT, "user": "deploy", "access_key_id": leaked}
    inject_fault(aws_settings.aws_endpoint_url or "", "UpdateAccessKey", code="ServiceUnavailable", status=503,
                 count=1)
    ctx = make_ctx()
    first, failures = engine_retry(lambda: iam_keys.DEACTIVATE_ONE.execute(ctx, params))
    assert len(failures) == 1 and first.deactivated and first.previous_status == "Active"
    assert _keys(iam) == {leaked: "Inactive", other: "Active"}
    comp = iam_keys.DEACTIVATE_ONE.compensation_params(iam_keys.DEACTIVATE_ONE.validate_params(params), first)  # type: ignore[misc]
    assert comp["key_ids"] == [leaked] and iam_keys.DEACTIVATE_ONE.compensation == "aws.iam.reactivate_access_keys"
    # a new incident finds it already Inactive: success, nothing to undo
    again = iam_keys.DEACTIVATE_ONE.execute(make_ctx(incident_id="INC-43"), params)
    assert not again.deactivated and again.previous_status == "Inactive"
    with pytest.raises(PermanentActionError, match="has no access key"):
        iam_keys.DEACTIVATE_ONE.execute(make_ctx(), {**params, "access_key_id": "AKIA" + "Q" * 16})


def test_deny_all_attach_rerun_detach_and_refusal(
    clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext], aws_settings: StanchSettings,
    engine_retry: Callable[..., Any],
) -> None:
    iam = clients("iam")
    _user(iam, keys=0)
    params = {"account": ACCOUNT, "user": "deploy"}
    inject_fault(aws_settings.aws_endpoint_url or "", "PutUserPolicy", code="Throttling", count=2)
    result, failures = engine_retry(lambda: iam_keys.ATTACH_DENY.execute(make_ctx(), params))
    assert len(failures) == 2 and result.attached and result.ours
    doc = iam.get_user_policy(UserName="deploy", PolicyName="StanchDenyAll")["PolicyDocument"]
    assert doc["Statement"][0] | {"Sid": ""} == {"Sid": "", "Effect": "Deny", "Action": "*", "Resource": "*"}
    rerun = iam_keys.ATTACH_DENY.execute(make_ctx(), params)
    assert rerun.ours and rerun.sid == result.sid
    other = iam_keys.ATTACH_DENY.execute(make_ctx(step_id="other"), params)  # someone else's deny-all
    assert not other.attached and not other.ours
    undo_other = iam_keys.ATTACH_DENY.compensation_params(iam_keys.ATTACH_DENY.validate_params(params), other)  # type: ignore[misc]
    assert iam_keys.DETACH_DENY.execute(make_ctx(), undo_other).skipped
    undo = iam_keys.ATTACH_DENY.compensation_params(iam_keys.ATTACH_DENY.validate_params(params), result)  # type: ignore[misc]
    assert iam_keys.DETACH_DENY.execute(make_ctx(), undo).removed
    assert iam.list_user_policies(UserName="deploy")["PolicyNames"] == []
    assert iam_keys.DETACH_DENY.execute(make_ctx(), undo).skipped == "no such policy"
    iam.put_user_policy(UserName="deploy", PolicyName="StanchDenyAll",
                        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}))
    with pytest.raises(PermanentActionError, match="not a deny-all"):
        iam_keys.ATTACH_DENY.execute(make_ctx(step_id="x"), params)
    with pytest.raises(PermanentActionError) as err:
        iam_keys.ATTACH_DENY.execute(make_ctx(), {"account": ACCOUNT, "user": "nobody"})
    assert err.value.aws_code == "NoSuchEntity"


def test_replace_key_stores_secret_never_returns_it_and_reverts(
    clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext], aws_settings: StanchSettings,
    engine_retry: Callable[..., Any],
) -> None:
    iam, sm = clients("iam"), clients("secretsmanager")
    (old,) = _user(iam, keys=1)
    params = {"account": ACCOUNT, "user": "deploy", "secret_name": "deploy/aws-key"}
    inject_fault(aws_settings.aws_endpoint_url or "", "CreateSecret", code="InternalServiceError", status=500,
                 count=1)
    ctx = _with_history(make_ctx())
    result, failures = engine_retry(lambda: iam_replace.REPLACE_KEY.execute(ctx, params))
    assert len(failures) == 1  # the key made by the failed attempt was deleted, not left behind
    keys = _keys(iam)
    assert keys == {old: "Inactive", result.new_access_key_id: "Active"}
    stored = json.loads(sm.get_secret_value(SecretId="deploy/aws-key")["SecretString"])
    assert stored["access_key_id"] == result.new_access_key_id
    assert stored["secret_access_key"] in ctx.secrets
    assert stored["secret_access_key"] not in result.model_dump_json()
    assert stored["secret_access_key"] not in json.dumps(ctx.recorded, default=str)  # type: ignore[attr-defined]
    assert result.deactivated == [old] and result.created
    again = iam_replace.REPLACE_KEY.execute(ctx, params)  # same step: finds its key, creates none
    assert again.new_access_key_id == result.new_access_key_id and again.deactivated == [old]
    assert len(_keys(iam)) == 2
    undo = iam_replace.REPLACE_KEY.compensation_params(iam_replace.REPLACE_KEY.validate_params(params), again)  # type: ignore[misc]
    reverted = iam_replace.REVERT_REPLACEMENT.execute(make_ctx(), undo)
    assert reverted.deleted and reverted.reactivated == [old] and _keys(iam) == {old: "Active"}
    _user(iam, "full", 2)
    with pytest.raises(PermanentActionError) as err:
        iam_replace.REPLACE_KEY.execute(make_ctx(step_id="full"), {"account": ACCOUNT, "user": "full"})
    assert err.value.aws_code == "LimitExceeded"


def test_find_secrets_by_tag(clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext],
                             aws_settings: StanchSettings, engine_retry: Callable[..., Any]) -> None:
    sm = clients("secretsmanager")
    for t in ("acme", "globex", "initech"):
        sm.create_secret(Name=f"tenants/{t}/api-key", SecretString="x" * 20, Tags=[{"Key": "tenant", "Value": t}])
    sm.create_secret(Name="unrelated", SecretString="y")
    params = {"account": ACCOUNT, "tag_key": "tenant", "tag_values": ["globex", "acme", "umbrella"]}
    inject_fault(aws_settings.aws_endpoint_url or "", "ListSecrets", code="ThrottlingException", count=1)
    result, failures = engine_retry(lambda: secrets_inventory.FIND_SECRETS.execute(make_ctx(), params))
    assert len(failures) == 1
    assert [s.tag for s in result.secrets] == ["acme", "globex"] and result.missing_values == ["umbrella"]
    every = secrets_inventory.FIND_SECRETS.execute(make_ctx(), {"account": ACCOUNT, "tag_key": "tenant"})
    assert every.count == 3
    inject_fault(aws_settings.aws_endpoint_url or "", "ListSecrets", status=400, code="AccessDeniedException")
    with pytest.raises(PermanentActionError, match="secretsmanager:ListSecrets"):
        secrets_inventory.FIND_SECRETS.execute(make_ctx(), params)
