"""Hostile incident records: a whole-record rewrite with recomputed hashes, truncation, a forged
appended line, a deleted or garbage head. ``stanch timeline verify`` must fail each one with a
clear message (exit 1, no traceback); a signed, untouched record verifies as signed."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from typer.testing import CliRunner

from flows.engine.checkpoints import SIGNED_HEAD, Signer, load_private, verify_record
from flows.engine.timeline import FILENAME, HEAD, Timeline, event_hash
from flows.entrypoints.cli import app

runner = CliRunner()


@pytest.fixture
def key(tmp_path: Path) -> dict[str, Any]:
    private = Ed25519PrivateKey.generate()
    path = tmp_path / "keys" / "timeline.key"  # outside the store
    path.parent.mkdir()
    path.write_bytes(private.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()))
    public = private.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    return {"path": path, "public": public, "private": private}


def _record(store: Path, key: dict[str, Any], incident: str = "INC-TAMPER") -> Path:
    """What a signed run writes: events, a checkpoint after the step, a final checkpoint."""
    folder = store / incident
    tl = Timeline(folder)
    signer = Signer(load_private(str(key["path"])), incident, tl)

    def record(kind: str, data: dict[str, Any]) -> dict[str, Any]:
        return tl.append(kind, data=data)

    tl.append("run.started", data={"incident_id": incident, "runbook": "t"}, actor="cli:U0ONCALL")
    tl.append("approval.requested", step="gate", data={"approvers": ["U0LEAD1"]})
    tl.append("approval.approved", step="gate", actor="slack:U0LEAD1", data={"approver": "slack:U0LEAD1"})
    tl.append("step.succeeded", step="gate", data={"output": {"approved_by": ["slack:U0LEAD1"]}})
    signer.checkpoint("step gate", record)
    tl.append("step.succeeded", step="revoke", data={"output": {"revoked": 3}})
    signer.checkpoint("step revoke", record)
    tl.append("run.finished", data={"outcome": "succeeded"})
    signer.checkpoint("end", record)
    tl.close()
    return folder


def _lines(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (folder / FILENAME).read_text().splitlines()]


def _write(folder: Path, events: list[dict[str, Any]], *, head: bool = True) -> None:
    """Rewrite the whole record the way an attacker with the project's own hash function would."""
    prev = "0" * 64
    for n, e in enumerate(events, 1):
        e["seq"], e["prev"] = n, prev
        e["hash"] = event_hash(e)
        prev = e["hash"]
    (folder / FILENAME).write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in events))
    if head:
        (folder / HEAD).write_text(f"{len(events)} {prev}".ljust(95) + "\n")


def _verify(store: Path, folder: Path, env: dict[str, str]) -> tuple[int, str]:
    result = runner.invoke(app, ["timeline", "verify", str(folder)],
                           env={"STANCH_STORE": str(store), "COLUMNS": "300", **env})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, " ".join(result.output.split())


def test_signed_record_verifies_and_every_tampering_fails_clearly(tmp_path: Path, key: dict[str, Any]) -> None:
    store = tmp_path / "store"
    keyed = {"STANCH_TIMELINE_PUBKEYS": key["public"]}
    folder = _record(store, key)
    code, out = _verify(store, folder, keyed)
    assert code == 0 and "3 signed checkpoint(s) verified, head signed" in out, out
    # the private key also works as the verifier's trust anchor (its public half)
    assert _verify(store, folder, {"STANCH_TIMELINE_KEY": str(key["path"])})[0] == 0
    # a signed record checked with no key at all: refused, not silently "intact"
    code, out = _verify(store, folder, {})
    assert code == 1 and "no public key is configured" in out
    pristine = (folder / FILENAME).read_bytes(), (folder / HEAD).read_bytes()

    def restore() -> None:
        (folder / FILENAME).write_bytes(pristine[0])
        (folder / HEAD).write_bytes(pristine[1])

    # 1. whole rewrite: change the approver, recompute every hash and the head
    events = _lines(folder)
    for e in events:
        if e["kind"] == "approval.approved":
            e["actor"] = e["data"]["approver"] = "slack:U0MALLORY"
    _write(folder, events)
    code, out = _verify(store, folder, keyed)
    assert code == 1 and "the record was rewritten" in out, out
    # ... and with the checkpoints stripped too: the head is unsigned
    _write(folder, [e for e in events if e["kind"] != "checkpoint.signed"])
    (folder / SIGNED_HEAD).rename(folder / "moved")
    code, out = _verify(store, folder, keyed)
    assert code == 1 and "UNSIGNED head" in out, out
    code, out = _verify(store, folder, {})  # documented default: chain only, said loudly
    assert code == 0 and "UNSIGNED" in out, out
    (folder / "moved").rename(folder / SIGNED_HEAD)
    restore()

    # 2. truncation: the last two lines dropped
    (folder / FILENAME).write_bytes(b"".join(pristine[0].splitlines(keepends=True)[:-2]))
    code, out = _verify(store, folder, keyed)
    assert code == 1 and "2 event(s) were dropped" in out, out
    restore()

    # 3. a forged line appended with a correct chain hash (head untouched)
    last = _lines(folder)[-1]
    forged = {"seq": last["seq"] + 1, "ts": last["ts"], "kind": "approval.approved", "step": "gate", "item": None,
              "actor": "slack:U0MALLORY", "data": {}, "prev": last["hash"]}
    forged["hash"] = event_hash(forged)
    with (folder / FILENAME).open("a") as fh:
        fh.write(json.dumps(forged, sort_keys=True) + "\n")
    code, out = _verify(store, folder, keyed)
    assert code == 1 and "1 event(s) after the head" in out, out
    # ... and the unsigned head moved along with it
    (folder / HEAD).write_text(f"{forged['seq']} {forged['hash']}".ljust(95) + "\n")
    code, out = _verify(store, folder, keyed)
    assert code == 1 and "UNSIGNED head: 1 event(s) after the last signed checkpoint" in out, out
    restore()

    # 4. deleted head, 5. garbage head: clear failures, no traceback, keyed or not
    for env in (keyed, {}):
        (folder / HEAD).unlink()
        code, out = _verify(store, folder, env)
        assert code == 1 and "timeline.head is missing" in out, out
        for garbage in (b"\x00\xff garbage", b"12 nothex", b"", b"999999999999999999999999 " + b"a" * 64):
            (folder / HEAD).write_bytes(garbage)
            code, out = _verify(store, folder, env)
            assert code == 1 and ("garbage" in out or "unreadable" in out), (garbage, out)
        restore()

    # 6. a forged signed head (the attacker's own key) and a garbage one
    (folder / SIGNED_HEAD).write_text(json.dumps({**json.loads((folder / SIGNED_HEAD).read_text()),
                                                  "signature": base64.b64encode(b"x" * 64).decode()}))
    code, out = _verify(store, folder, keyed)
    assert code == 1 and "signed head: signature does not match" in out, out
    (folder / SIGNED_HEAD).write_text("{not json")
    code, out = _verify(store, folder, keyed)
    assert code == 1 and f"{SIGNED_HEAD} is garbage" in out, out


def test_unsigned_record_passes_only_without_a_key_and_says_so(tmp_path: Path, key: dict[str, Any]) -> None:
    store = tmp_path / "store"
    tl = Timeline(store / "INC-PLAIN")
    tl.append("run.started", data={})
    tl.append("run.finished", data={"outcome": "succeeded"})
    tl.close()
    code, out = _verify(store, store / "INC-PLAIN", {})
    assert code == 0 and "UNSIGNED" in out
    code, out = _verify(store, store / "INC-PLAIN", {"STANCH_TIMELINE_PUBKEYS": key["public"]})
    assert code == 1 and "UNSIGNED head: no timeline.checkpoint" in out, out
    assert verify_record(store / "INC-PLAIN" / FILENAME, {}).ok


def test_a_key_inside_the_store_is_refused(tmp_path: Path, key: dict[str, Any]) -> None:
    from integrations.errors import ConfigurationError
    from integrations.settings import StanchSettings

    store = tmp_path / "store"
    inside = store / "timeline.key"
    store.mkdir()
    inside.write_bytes(key["path"].read_bytes())
    settings = StanchSettings(store=store, timeline_key=str(inside))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="inside the incident store"):
        Signer.from_settings(settings, "INC-X", Timeline(store / "INC-X"))
    # the key itself as a value: base64 of the 32-byte seed
    seed = key["private"].private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    assert load_private(base64.b64encode(seed).decode()).public_key().public_bytes(
        Encoding.OpenSSH, PublicFormat.OpenSSH).decode() == key["public"]


def test_appends_outside_a_run_are_signed_when_a_key_is_configured(tmp_path: Path, key: dict[str, Any]) -> None:
    from flows.engine.checkpoints import key_id, sign_appended
    from integrations.settings import StanchSettings

    store = tmp_path / "store"
    folder = _record(store, key)
    keys = {key_id(key["private"].public_key()): key["private"].public_key()}
    tl = Timeline(folder)
    tl.append("slack.refused", step="gate", actor="slack:U0OUTSIDER", data={"reason": "not allowed"})
    assert "UNSIGNED head: 1 event(s)" in str(verify_record(folder / FILENAME, keys))
    settings = StanchSettings(store=store, timeline_key=str(key["path"]))  # type: ignore[arg-type]
    assert sign_appended(settings, "INC-TAMPER", tl, "slack refusal") is None
    assert verify_record(folder / FILENAME, keys).signed
    assert sign_appended(StanchSettings(store=store), "INC-TAMPER", tl, "x") is None  # no key: nothing to do
    tl.close()
