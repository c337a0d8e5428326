"""Secret inputs travel as references: split, vault/environment resolution, compensation
records, and the refusals of resume/rollback when a value is not there (issue 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.engine import secret_inputs as si
from flows.engine.compiler import compile_plan
from flows.engine.redaction import MASK
from flows.engine.spec import load_runbook
from integrations.base import default_registry
from integrations.errors import InputError

RUNBOOK = Path(__file__).parent / "runbooks" / "secret.yaml"


@pytest.fixture
def plan():  # type: ignore[no-untyped-def]
    registry = default_registry()
    loaded = load_runbook(RUNBOOK, registry)
    return compile_plan(loaded.runbook, loaded.path, registry)


def test_split_keeps_values_out_of_what_is_stored(plan) -> None:  # type: ignore[no-untyped-def]
    public, values = si.split(plan, {"token": "s3cr3t-value"})
    assert public == {"token": {"$secret_ref": "token"}} and values == {"token": "s3cr3t-value"}
    assert si.public_inputs(plan, {"token": "s3cr3t-value"}) == {"token": {"$secret_ref": "token"}}


def test_resolve_from_vault_then_environment_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    si.deposit("INC-V", {"token": "from-vault"})
    try:
        assert si.resolve("INC-V", {"token": si.ref("token"), "x": 1})[0] == {"token": "from-vault", "x": 1}
    finally:
        si.discard("INC-V")
    with pytest.raises(InputError, match=r"'token'.*STANCH_SECRET_TOKEN"):
        si.resolve("INC-V", {"token": si.ref("token")})
    assert si.resolve("INC-V", {"token": si.ref("token")}, strict=False) == ({"token": si.ref("token")}, ["token"])
    secret_file = tmp_path / "token"
    secret_file.write_text("from-file\n")
    monkeypatch.setenv("STANCH_SECRET_TOKEN_FILE", str(secret_file))
    assert si.resolve("INC-V", {"token": si.ref("token")})[0] == {"token": "from-file"}
    monkeypatch.setenv("STANCH_SECRET_TOKEN", "from-env")
    assert si.resolve("INC-V", {"token": si.ref("token")})[0] == {"token": "from-env"}


def test_resume_refuses_a_secret_only_kept_as_a_marker(plan) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="secret input 'token' is not kept in the incident"):
        si.resume_inputs(plan, {"token": si.ref("token")}, {})
    with pytest.raises(InputError, match="'token'"):  # what an older stanch wrote
        si.resume_inputs(plan, {"token": MASK}, {})
    public, values = si.resume_inputs(plan, {"token": si.ref("token")}, {"token": "again"})
    assert public == {"token": si.ref("token")} and values == {"token": "again"}


def test_resume_refuses_a_plain_input_recorded_redacted(plan) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="input 'ca_secret' was recorded as"):
        si.resume_inputs(plan, {"token": si.ref("token"), "ca_secret": MASK}, {"token": "t"})


def test_compensation_records_keep_references_and_rollback_checks_them() -> None:
    params = {"secret_id": "vendor/api", "value": "the-secret-value", "note": "the-secret-value inside"}
    recorded = si.to_refs(params, {"token": "the-secret-value"})
    assert recorded["value"] == si.ref("token") and recorded["secret_id"] == "vendor/api"
    assert si.from_refs(recorded, {"token": "the-secret-value"})["value"] == "the-secret-value"
    with pytest.raises(InputError, match="'token'"):
        si.from_refs(recorded, {"token": si.ref("token")})
    records = {"store": [{"item": None, "action": "x", "with": recorded}],
               "old": [{"item": "a", "action": "y", "with": {"secret_name": MASK}}]}
    problems = si.rollback_problems(records, {})
    assert any("needs secret input 'token'" in p for p in problems)
    assert any("old[a]" in p and "secret_name" in p for p in problems)
    assert not [p for p in si.rollback_problems(records, {"token": "v"}) if "token" in p]


def test_a_deployment_run_never_gets_a_secret_value(plan, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from flows.entrypoints.slack.launchers import DeploymentLauncher, LaunchRequest

    public, values = si.split(plan, {"token": "typed-in-slack"})
    request = LaunchRequest(runbook_path=RUNBOOK, inputs=public, incident_id="INC-D", store=tmp_path,
                            initiator="slack:U1", idempotency_key="k", secrets=values)
    assert "typed-in-slack" not in repr(request)
    with pytest.raises(InputError, match="STANCH_SECRET_TOKEN"):
        DeploymentLauncher().launch(request)  # refused before anything reaches Prefect
    # a required secret left out of the command travels as a reference, resolved on the worker
    assert si.with_refs_for_absent(plan, {}) == {"token": si.ref("token")}
