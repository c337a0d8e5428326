"""Signed checkpoints of an incident timeline: tamper evidence that survives a rewrite.

A hash chain alone does not stop someone who rewrites the whole record and recomputes every
hash. With ``STANCH_TIMELINE_KEY`` (an Ed25519 private key kept *outside* the store), the engine
signs the timeline's head after each step and at the end of a run or rollback:

- a ``checkpoint.signed`` event in the timeline, signing the (seq, hash) of the event before it;
- ``timeline.checkpoint`` next to the timeline: the signed (seq, hash) of that checkpoint event,
  i.e. the head at the moment of the checkpoint (replaced at every checkpoint).

``verify_record`` checks the chain (``flows.engine.timeline.verify``), every checkpoint's
signature against the trusted public keys (``STANCH_TIMELINE_PUBKEYS`` plus the public half of
``STANCH_TIMELINE_KEY``) and that the signed head is the end of the file. Without any key
configured, a chain-only record verifies, marked UNSIGNED (see docs/operations.md).

Owns: key loading, the signed payload, ``Signer`` (used by the scheduler/runtime), verification.
Must not touch: Prefect, Slack (witnesses are published by the caller), the store layout beyond
``timeline.checkpoint``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
    load_ssh_private_key,
    load_ssh_public_key,
)

from flows.engine.timeline import HEAD, Timeline, VerifyResult, read_events, verify
from flows.store import mirror
from integrations.errors import ConfigurationError
from integrations.settings import StanchSettings

KIND = "checkpoint.signed"
SIGNED_HEAD = "timeline.checkpoint"
_DOMAIN = "stanch-timeline-checkpoint/v1"


def key_id(key: Ed25519PublicKey) -> str:
    """First 16 hex digits of sha256 over the raw public key: names the key in a checkpoint."""
    return hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


def payload(incident: str, seq: int, digest: str) -> bytes:
    """What is signed: the incident, an event's seq and its hash (domain-separated)."""
    return json.dumps({"d": _DOMAIN, "incident": incident, "seq": seq, "hash": digest},
                      sort_keys=True, separators=(",", ":")).encode()


def load_private(value: str) -> Ed25519PrivateKey:
    """``STANCH_TIMELINE_KEY``: a key file path, PEM/OpenSSH text, or base64 of the 32-byte seed."""
    text = value.strip()
    data: bytes
    if "PRIVATE KEY" in text:
        data = text.encode()
    elif len(text) in (43, 44) and not os.path.exists(text):
        try:
            return Ed25519PrivateKey.from_private_bytes(base64.b64decode(text + "=" * (-len(text) % 4)))
        except (ValueError, binascii.Error):
            raise ConfigurationError("STANCH_TIMELINE_KEY: not base64 of a 32-byte Ed25519 seed") from None
    else:
        try:
            data = Path(text).read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"STANCH_TIMELINE_KEY: cannot read {text}: {exc.strerror or exc}") from None
    try:
        key = load_ssh_private_key(data, None) if b"OPENSSH" in data else load_pem_private_key(data, None)
    except (ValueError, TypeError):
        raise ConfigurationError("STANCH_TIMELINE_KEY: not a readable unencrypted private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError("STANCH_TIMELINE_KEY: not an Ed25519 key (ssh-keygen -t ed25519)")
    return key


def load_public(value: str) -> list[Ed25519PublicKey]:
    """``STANCH_TIMELINE_PUBKEYS``: a file of keys, or the keys themselves, one per line."""
    text = value.strip()
    if "\n" not in text and not text.startswith("ssh-") and os.path.exists(text):
        try:
            text = Path(text).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"STANCH_TIMELINE_PUBKEYS: cannot read {value}: {type(exc).__name__}") from None
    keys: list[Ed25519PublicKey] = []
    for n, line in enumerate(text.replace(",", "\n").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key: object = (load_ssh_public_key(line.encode()) if line.startswith("ssh-")
                           else Ed25519PublicKey.from_public_bytes(base64.b64decode(line, validate=True)))
        except (ValueError, TypeError, binascii.Error):
            raise ConfigurationError(f"STANCH_TIMELINE_PUBKEYS entry {n}: expected 'ssh-ed25519 AAAA…' or "
                                     "base64 of 32 raw bytes") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigurationError(f"STANCH_TIMELINE_PUBKEYS entry {n}: only Ed25519 keys are accepted")
        keys.append(key)
    return keys


def trusted_keys(settings: StanchSettings) -> dict[str, Ed25519PublicKey]:
    """Key id -> public key: STANCH_TIMELINE_PUBKEYS and the public half of STANCH_TIMELINE_KEY."""
    keys = load_public(settings.timeline_pubkeys) if settings.timeline_pubkeys else []
    if settings.timeline_key is not None:
        keys.append(load_private(settings.timeline_key.get_secret_value()).public_key())
    return {key_id(k): k for k in keys}


class Signer:
    """Signs checkpoints of one incident's timeline (``STANCH_TIMELINE_KEY``)."""

    def __init__(self, key: Ed25519PrivateKey, incident_id: str, timeline: Timeline) -> None:
        self.key = key
        self.kid = key_id(key.public_key())
        self.incident_id = incident_id
        self.timeline = timeline

    @classmethod
    def from_settings(cls, settings: StanchSettings, incident_id: str, timeline: Timeline) -> Signer | None:
        if settings.timeline_key is None:
            return None
        value = settings.timeline_key.get_secret_value()
        path = Path(value.strip())
        if "PRIVATE KEY" not in value and path.exists():
            store = settings.store_dir.resolve()
            if path.resolve().is_relative_to(store):
                raise ConfigurationError(f"STANCH_TIMELINE_KEY {path} is inside the incident store {store}: "
                                         "whoever can rewrite the record could then re-sign it; keep it elsewhere")
        return cls(load_private(value), incident_id, timeline)

    def sign(self, seq: int, digest: str) -> str:
        return base64.b64encode(self.key.sign(payload(self.incident_id, seq, digest))).decode()

    def checkpoint(self, label: str, record: Any) -> dict[str, Any]:
        """Sign the current head in a ``checkpoint.signed`` event (through ``record``, the engine's
        timeline writer), then sign that event as the head in ``timeline.checkpoint``. Returns
        ``{seq, hash, label}`` of the signed head, for the witnesses."""
        seq, digest = self.timeline.head()
        event = record(KIND, data={"label": label, "incident": self.incident_id, "seq": seq, "hash": digest,
                                   "key": self.kid, "signature": self.sign(seq, digest)})
        head = {"incident": self.incident_id, "seq": event["seq"], "hash": event["hash"], "key": self.kid,
                "signature": self.sign(event["seq"], event["hash"]), "label": label}
        target = self.timeline.folder / SIGNED_HEAD
        tmp = target.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(json.dumps(head, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        mirror(self.timeline.folder, target)  # the PostgreSQL store keeps the signed head too
        return {"seq": event["seq"], "hash": event["hash"], "label": label}


def sign_appended(settings: StanchSettings, incident_id: str, timeline: Timeline, label: str) -> str | None:
    """After an append outside a run (the Slack app's refusals, a failed start): sign the new head
    when a key is configured, so the record's end stays signed. Returns a problem, never raises."""
    try:
        signer = Signer.from_settings(settings, incident_id, timeline)
        if signer is not None:
            signer.checkpoint(label, lambda kind, data: timeline.append(kind, data=data))
    except Exception as exc:  # the append itself is done; verify will say the head is unsigned
        return f"could not sign the timeline checkpoint: {type(exc).__name__}: {exc}"
    return None


@dataclass(frozen=True)
class RecordResult:
    """``verify_record``'s answer: the chain's result, how many checkpoints were checked, and
    whether the record's end is signed."""

    chain: VerifyResult
    ok: bool
    checkpoints: int = 0
    signed: bool = False
    problem: str | None = None

    def __str__(self) -> str:
        if not self.chain.ok:
            return str(self.chain)
        if not self.ok:
            return f"timeline NOT VERIFIED: {self.problem}"
        if self.signed:
            return (f"timeline intact: {self.chain.events} events, hash chain verified, "
                    f"{self.checkpoints} signed checkpoint(s) verified, head signed")
        return (f"timeline intact: {self.chain.events} events, hash chain verified — UNSIGNED (no "
                "STANCH_TIMELINE_KEY/STANCH_TIMELINE_PUBKEYS configured): a whole rewrite with recomputed "
                "hashes would not be detected")


def _check(keys: dict[str, Ed25519PublicKey], data: dict[str, Any], seq: int, digest: str) -> str | None:
    key = keys.get(str(data.get("key")))
    if key is None:
        return f"signed by unknown key {data.get('key')!r} (not in STANCH_TIMELINE_PUBKEYS)"
    try:
        key.verify(base64.b64decode(str(data.get("signature")), validate=True),
                   payload(str(data.get("incident")), seq, digest))
    except (InvalidSignature, ValueError, binascii.Error):
        return "signature does not match (forged or re-hashed)"
    return None


def verify_record(timeline_path: Path, keys: dict[str, Ed25519PublicKey]) -> RecordResult:
    """The chain, then every checkpoint's signature, then the signed head (see module doc).

    With ``keys``, an unsigned head (no ``timeline.checkpoint``, or events after it) fails; without
    keys, a record that carries checkpoints fails (they cannot be checked), else it is UNSIGNED."""
    chain = verify(timeline_path)
    if not chain.ok:
        return RecordResult(chain, False, problem=chain.problem)
    hashes: dict[int, str] = {}
    checkpoints: list[dict[str, Any]] = []
    for event in read_events(timeline_path):
        hashes[int(event["seq"])] = str(event["hash"])
        if event.get("kind") == KIND:
            checkpoints.append(event)
    last_seq = max(hashes)
    signed_head = timeline_path.parent / SIGNED_HEAD
    if not keys:
        if checkpoints or signed_head.exists():
            return RecordResult(chain, False, problem="the record is signed but no public key is configured to "
                                "check it: set STANCH_TIMELINE_PUBKEYS (or STANCH_TIMELINE_KEY)")
        return RecordResult(chain, True)
    for event in checkpoints:
        data = event.get("data") or {}
        seq = data.get("seq")
        if not isinstance(seq, int) or seq not in hashes or hashes[seq] != data.get("hash"):
            return RecordResult(chain, False, len(checkpoints), problem=f"checkpoint at seq {event['seq']} signed "
                                f"seq {seq} with a hash the record does not have: the record was rewritten")
        problem = _check(keys, data, seq, str(data.get("hash")))
        if problem:
            return RecordResult(chain, False, len(checkpoints), problem=f"checkpoint at seq {event['seq']}: {problem}")
    try:
        head = json.loads(signed_head.read_bytes()[:8192])
        if not isinstance(head, dict):
            raise ValueError
    except FileNotFoundError:
        return RecordResult(chain, False, len(checkpoints), problem=f"UNSIGNED head: no {SIGNED_HEAD} (the run "
                            "never signed a checkpoint, or it was deleted) while a timeline key is configured")
    except (OSError, ValueError):
        return RecordResult(chain, False, len(checkpoints), problem=f"{SIGNED_HEAD} is garbage (not JSON)")
    seq, digest = head.get("seq"), head.get("hash")
    if not isinstance(seq, int) or hashes.get(seq) != digest:
        return RecordResult(chain, False, len(checkpoints), problem=f"the signed head (seq {seq}) is not in the "
                            "record: the record was rewritten or truncated")
    problem = _check(keys, head, seq, str(digest))
    if problem:
        return RecordResult(chain, False, len(checkpoints), problem=f"signed head: {problem}")
    if seq != last_seq:
        return RecordResult(chain, False, len(checkpoints), problem=f"UNSIGNED head: {last_seq - seq} event(s) "
                            f"after the last signed checkpoint (seq {seq}) — appended later, or the run "
                            "stopped before it could sign (resume it to sign again)")
    return RecordResult(chain, True, len(checkpoints), signed=True)


__all__ = ["HEAD", "KIND", "SIGNED_HEAD", "RecordResult", "Signer", "key_id", "load_private", "load_public",
           "payload", "sign_appended", "trusted_keys", "verify_record"]
