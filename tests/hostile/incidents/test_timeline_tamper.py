"""Hostile incident records: a whole-record rewrite with recomputed hashes, truncation, a forged
appended line, a deleted or garbage head, a checkpoint's signature re-used as the head's after a
cut (B6), an unsigned record, a record signed by a key not trusted here. ``stanch timeline
verify`` must fail each one with a clear message (exit 1, no traceback); a signed, untouched
record verifies as signed, and only ``--chain-only`` passes an unsigned one (saying so loudly)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from typer.testing import CliRunner

from flows.engine.checkpoints import KIND, SIGNED_HEAD, Signer, key_id, load_private, payload, verify_record
from flows.engine.timeline import FILENAME, HEAD, Timeline, event_hash, verify
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


def _verify(store: Path, folder: Path, env: dict[str, str], *flags: str) -> tuple[int, str]:
    # a STANCH_HOME of its own: its installation key (if any) is not the record's
    result = runner.invoke(app, ["timeline", "verify", str(folder), *flags],
                           env={"STANCH_STORE": str(store), "STANCH_HOME": str(store.parent / "verifier-home"),
                                "COLUMNS": "300", **env})
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
    # a signed record checked where its key is not trusted: refused, naming the key and the remedy
    code, out = _verify(store, folder, {})
    kid = key_id(key["private"].public_key())
    assert code == 1 and f"signed by key {kid}, which is not trusted here" in out, out
    assert "STANCH_TIMELINE_PUBKEYS" in out and "stanch timeline key" in out, out
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
    assert code == 1 and "UNSIGNED head: no timeline.checkpoint and no signed checkpoint" in out, out
    code, out = _verify(store, folder, {})  # no key configured: still a failure, never "intact"
    assert code == 1 and "UNSIGNED head" in out and "--chain-only" in out, out
    code, out = _verify(store, folder, {}, "--chain-only")  # asked for: the chain alone, said loudly
    assert code == 0 and "CHAIN ONLY, SIGNATURES NOT CHECKED" in out and "would pass" in out, out
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


def test_a_signed_record_copied_under_another_incident_id_fails(tmp_path: Path, key: dict[str, Any]) -> None:
    """Every signature is genuine, but the record is another incident's: a copy (or a rename) of
    INC-A's folder to INC-B must not verify as INC-B. The original still verifies."""
    import shutil

    store = tmp_path / "store"
    keyed = {"STANCH_TIMELINE_PUBKEYS": key["public"]}
    original = _record(store, key, "INC-A")
    copy = store / "INC-B"
    shutil.copytree(original, copy)
    code, out = _verify(store, copy, keyed)
    assert code == 1 and "signed for incident INC-A, not INC-B" in out and "copied or renamed" in out, out
    # by id, as on-call types it
    result = runner.invoke(app, ["timeline", "verify", "INC-B"], env={
        "STANCH_STORE": str(store), "STANCH_HOME": str(tmp_path / "verifier-home"), "COLUMNS": "300", **keyed})
    assert result.exit_code == 1 and "not INC-B" in " ".join(result.output.split()), result.output
    assert _verify(store, original, keyed)[0] == 0
    # the library call without an expected id still checks signatures (used by callers that know no id)
    assert verify_record(copy / FILENAME, {key_id(key["private"].public_key()): key["private"].public_key()}).ok


def test_an_unsigned_record_fails_and_only_chain_only_passes_it_loudly(tmp_path: Path, key: dict[str, Any]) -> None:
    store = tmp_path / "store"
    tl = Timeline(store / "INC-PLAIN")  # what stanch wrote before it signed by default
    tl.append("run.started", data={})
    tl.append("run.finished", data={"outcome": "succeeded"})
    tl.close()
    for env in ({}, {"STANCH_TIMELINE_PUBKEYS": key["public"]}):
        code, out = _verify(store, store / "INC-PLAIN", env)
        assert code == 1 and "UNSIGNED head: no timeline.checkpoint" in out and "--chain-only" in out, out
    code, out = _verify(store, store / "INC-PLAIN", {}, "--chain-only")
    assert code == 0 and "timeline chain intact: 2 events" in out and "SIGNATURES NOT CHECKED" in out, out
    assert not verify_record(store / "INC-PLAIN" / FILENAME, {}).ok


def _truncate_before_first_checkpoint(folder: Path, *, strip_version: bool) -> int:
    """B6: keep the lines before the first checkpoint event, point timeline.head at the last one
    kept, and forge timeline.checkpoint from that checkpoint's own data (its seq/hash are the new
    end's; its signature is real). Returns the number of events kept."""
    events = _lines(folder)
    first = next(e for e in events if e["kind"] == KIND)
    kept = [e for e in events if e["seq"] < first["seq"]]
    (folder / FILENAME).write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in kept))
    (folder / HEAD).write_text(f"{kept[-1]['seq']} {kept[-1]['hash']}".ljust(95) + "\n")
    forged = {k: first["data"][k] for k in ("incident", "seq", "hash", "key", "signature", "v") if k in first["data"]}
    if strip_version:
        forged.pop("v", None)  # pretend to be a v1 head
    (folder / SIGNED_HEAD).write_text(json.dumps(forged) + "\n")
    return len(kept)


def test_a_checkpoint_signature_reused_as_the_head_after_a_cut_fails(tmp_path: Path, key: dict[str, Any]) -> None:
    """B6: the signature inside a checkpoint event signed the same payload as the head; a record
    cut back to just before a checkpoint, with that checkpoint's data as its signed head, verified
    as "intact … head signed". The head must now be a checkpoint event, and its signature is in
    another role than a checkpoint event's, so neither form of the forgery passes."""
    keyed = {"STANCH_TIMELINE_PUBKEYS": key["public"]}
    for strip_version in (False, True):
        store = tmp_path / f"store-{strip_version}"
        folder = _record(store, key)
        kept = _truncate_before_first_checkpoint(folder, strip_version=strip_version)
        assert verify(folder / FILENAME).ok and kept == 4  # the bare chain and its head are fooled
        code, out = _verify(store, folder, keyed)
        assert code == 1 and "the signed head (seq 4) is not a checkpoint event" in out, out
    # two checkpoints in a row: the cut ends on a checkpoint event, so only the roles tell them apart
    store = tmp_path / "store-twice"
    folder = store / "INC-TWICE"
    tl = Timeline(folder)
    signer = Signer(load_private(str(key["path"])), "INC-TWICE", tl)
    tl.append("run.started", data={})
    for label in ("step a", "end"):
        signer.checkpoint(label, lambda kind, data: tl.append(kind, data=data))
    tl.close()
    assert _verify(store, folder, keyed)[0] == 0
    events = _lines(folder)
    assert [e["kind"] for e in events] == ["run.started", KIND, KIND]
    (folder / FILENAME).write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in events[:2]))
    (folder / HEAD).write_text(f"2 {events[1]['hash']}".ljust(95) + "\n")
    forged = {k: events[2]["data"][k] for k in ("v", "incident", "seq", "hash", "key", "signature")}
    (folder / SIGNED_HEAD).write_text(json.dumps(forged) + "\n")
    code, out = _verify(store, folder, keyed)
    assert code == 1 and "signed head: signature does not match" in out, out


def _legacy_record(store: Path, key: dict[str, Any], layout: list[str]) -> Path:
    """A record signed in the v1 format (one payload for both roles, no ``v`` field), as stanch
    wrote it before B6 was fixed: ``layout`` is the kinds in order, ``checkpoint`` signing the
    event before it; timeline.checkpoint signs the last checkpoint event."""
    folder = store / "INC-V1"
    tl = Timeline(folder)
    private, kid = key["private"], key_id(key["private"].public_key())

    def sign(seq: int, digest: str) -> str:
        return base64.b64encode(private.sign(payload("INC-V1", seq, digest))).decode()

    head: dict[str, Any] = {}
    for kind in layout:
        if kind == "checkpoint":
            seq, digest = tl.head()
            event = tl.append(KIND, data={"label": "x", "incident": "INC-V1", "seq": seq, "hash": digest,
                                          "key": kid, "signature": sign(seq, digest)})
            head = {"incident": "INC-V1", "seq": event["seq"], "hash": event["hash"], "key": kid,
                    "signature": sign(event["seq"], event["hash"]), "label": "x"}
        else:
            tl.append(kind, data={})
    tl.close()
    (folder / SIGNED_HEAD).write_text(json.dumps(head, sort_keys=True) + "\n")
    return folder


def test_a_v1_record_still_verifies_and_says_what_v1_cannot_catch(tmp_path: Path, key: dict[str, Any]) -> None:
    keyed = {"STANCH_TIMELINE_PUBKEYS": key["public"]}
    store = tmp_path / "store"
    folder = _legacy_record(store, key, ["run.started", "step.succeeded", "checkpoint", "run.finished", "checkpoint"])
    code, out = _verify(store, folder, keyed)
    assert code == 0 and "2 signed checkpoint(s) verified, head signed" in out and "v1 signatures" in out, out
    assert "witnesses" in out, out
    # B6 on a v1 record: the forged head is not a checkpoint event
    _truncate_before_first_checkpoint(folder, strip_version=True)
    code, out = _verify(store, folder, keyed)
    assert code == 1 and "the signed head (seq 2) is not a checkpoint event" in out, out
    # a v2 record whose head is presented in the v1 format: downgraded, refused
    folder = _record(tmp_path / "store2", key)
    head = json.loads((folder / SIGNED_HEAD).read_text())
    head.pop("v")
    (folder / SIGNED_HEAD).write_text(json.dumps(head))
    code, out = _verify(tmp_path / "store2", folder, keyed)
    assert code == 1 and "downgraded" in out, out
    # a format this stanch does not know
    (folder / SIGNED_HEAD).write_text(json.dumps({**head, "v": 3}))
    code, out = _verify(tmp_path / "store2", folder, keyed)
    assert code == 1 and "v=3, which this stanch does not know" in out, out


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


def test_appends_outside_a_run_are_signed(tmp_path: Path, key: dict[str, Any]) -> None:
    from flows.engine.checkpoints import sign_appended, trusted_keys
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
    # no key configured: the installation key signs (created on first use), and is trusted here
    plain = StanchSettings(store=store, home=tmp_path / "home")  # type: ignore[arg-type]
    tl.append("slack.refused", step="gate", actor="slack:U0OUTSIDER", data={"reason": "again"})
    assert sign_appended(plain, "INC-TAMPER", tl, "x") is None
    tl.close()
    result = verify_record(folder / FILENAME, {**keys, **trusted_keys(plain)})
    assert result.signed and result.key != key_id(key["private"].public_key()), result
