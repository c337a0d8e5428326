"""Redaction happens where things are written or shown, by what a value *is* (declared secret,
registered with ctx.redact, secret-looking material), never by a field name that merely mentions
a secret, and never on the values steps hand each other (issue 8: the new signing key went to a
secret literally named ``[redacted]``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from flows.engine.redaction import MASK, Redactor, is_material_field, masked_path
from flows.engine.runtime import run_runbook
from integrations.base import ActionContext, ActionParams, ActionResult, ActionSpec, default_registry

HERE = Path(__file__).parent / "runbooks"


def _pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def test_names_and_ids_of_secrets_are_not_masked() -> None:
    r = Redactor()
    value = {"secret_name": "desktop-app/signing-key", "signing_secret": "desktop-app/signing-key",
             "ca_secret": "pki/issuing-ca", "secret_arn": "arn:aws:secretsmanager:us-east-1:1:secret:x",
             "secret_id": "x", "client_secret_name": "oauth/x", "rotation_token": "4f1c…"}
    assert r(value) == value


def test_declared_registered_and_structural_secrets_are_masked() -> None:
    pem = _pem()
    r = Redactor({"input-value-1234"})
    r.add("registered-by-ctx-redact")
    out = r({"a": "uses input-value-1234 here", "b": ["registered-by-ctx-redact"], "c": f"key:\n{pem}",
             "d": json.dumps({"k": pem}), "e": "xoxb-1234567890-abcdefghij",
             "f": "ghp_" + "A" * 36, "password": "hunter2", "private_key_pem": "x", "nested": {"api_key": "k"}})
    assert out["a"] == f"uses {MASK} here"
    assert out["b"] == [MASK]
    assert out["c"] == f"key:\n{MASK}\n"
    assert "PRIVATE KEY" not in out["d"] and MASK in out["d"]  # a PEM inside JSON text (escaped newlines)
    assert out["e"] == MASK and out["f"] == MASK
    assert out["password"] == MASK and out["private_key_pem"] == MASK and out["nested"]["api_key"] == MASK


def test_a_truncated_private_key_is_still_masked() -> None:
    pem = _pem()
    assert "MII" not in Redactor().text("log: " + pem[:120]).split(MASK)[-1] + Redactor().text(pem[:120])


def test_material_field_names() -> None:
    for name in ("password", "db_password", "private_key", "privateKey", "secret_access_key", "session_token",
                 "access_token", "api_key", "secret_string"):
        assert is_material_field(name), name
    for name in ("secret", "secret_name", "signing_secret", "ca_secret", "token_id", "idempotency_token",
                 "key_id", "secret_version_id", "password_policy_arn"):
        assert not is_material_field(name), name


def test_masked_path_names_where_a_redacted_value_sits() -> None:
    assert masked_path({"a": [{"b": "x"}, {"c": f"y {MASK}"}]}) == "a[1].c"
    assert masked_path({"a": "ok", "b": [1, 2]}) is None


# --------------------------------------------------------------------------- through a real flow
class _ScopeParams(ActionParams):
    pass


class _ScopeResult(ActionResult):
    signing_secret: str
    secret_name: str
    ca_secret: str
    leaked_pem: str  # an action breaking the contract: the safety net must still catch it
    password: str


_LEAK = _pem()


def _scope(ctx: ActionContext, params: _ScopeParams) -> _ScopeResult:
    return _ScopeResult(signing_secret="desktop-app/signing-key", secret_name="billing/api-key",
                        ca_secret="pki/issuing-ca", leaked_pem=_LEAK, password="pw-123456")


SCOPE = ActionSpec(name="test.scope_with_names", summary="test: an output naming secrets", params=_ScopeParams,
                   result=_ScopeResult, run=_scope, mutating=False, idempotent=True)


@pytest.mark.usefixtures("prefect_server")
def test_a_secret_name_reaches_the_next_step_and_key_material_is_masked_in_the_timeline(tmp_path: Path) -> None:
    registry = default_registry()
    added = "test.scope_with_names" not in registry
    if added:
        registry.register(SCOPE)
    try:
        state = run_runbook(str(HERE / "names.yaml"), {}, "INC-NAMES", str(tmp_path), False, "test",
                            return_state=True)
    finally:  # the process-wide registry is what docs/actions.md is checked against (test_catalogue)
        if added:
            registry._actions.pop("test.scope_with_names", None)
    assert state.is_completed(), state.message
    folder = tmp_path / "INC-NAMES"
    events = [json.loads(line) for line in (folder / "timeline.jsonl").open()]
    done = {e["step"]: e["data"]["output"] for e in events if e["kind"] == "step.succeeded"}
    # the next step got the names, not "[redacted]"
    assert done["use"]["message"] == "desktop-app/signing-key|billing/api-key|pki/issuing-ca"
    # names are shown as they are; material is masked where it is written
    assert done["scope"]["signing_secret"] == "desktop-app/signing-key"
    assert done["scope"]["leaked_pem"].strip() == MASK and done["scope"]["password"] == MASK
    everything = "".join(p.read_text() for p in folder.rglob("*") if p.is_file())
    assert "PRIVATE KEY" not in everything and "pw-123456" not in everything
    assert "desktop-app/signing-key" in (folder / "reports" / "use.md").read_text()
