"""Signed checkpoints of an incident timeline: tamper evidence that survives a rewrite.

A hash chain alone does not stop someone who rewrites the whole record and recomputes every
hash. Every process that writes incidents signs the timeline's head with an Ed25519 key kept
*outside* the store (``STANCH_TIMELINE_KEY``, else the installation key — see
``flows.engine.timeline_keys``) after each step and at the end of a run or rollback:

- a ``checkpoint.signed`` event in the timeline, signing the (seq, hash) of the event before it
  in the role ``checkpoint``;
- ``timeline.checkpoint`` next to the timeline: the (seq, hash) of that checkpoint event signed in
  the role ``head`` (replaced at every checkpoint).

The two signatures are domain-separated (format ``v: 2``): a checkpoint event's signature can
never stand in for the head's, so a record cut back to just before a checkpoint does not verify
with that checkpoint's data as its head (it did with ``v1``, where both signed the same payload).

``verify_record`` checks the chain (``flows.engine.timeline.verify``), every checkpoint's
signature against the trusted keys, that the signed head is a checkpoint event whose own
signature checks, and that it is the end of the file. An unsigned record fails; a record signed
by a key not trusted here fails naming the key. ``v1`` records (written before the roles existed)
still verify, said so: their head could be a checkpoint's signature re-used, so a cut back to an
earlier checkpoint is caught only by the witnesses.

Owns: the signed payload, ``Signer`` (used by the scheduler/runtime), verification.
Must not touch: Prefect, Slack (witnesses are published by the caller), the store layout beyond
``timeline.checkpoint``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from flows.engine.timeline import HEAD, Timeline, VerifyResult, read_events, verify
from flows.engine.timeline_keys import key_id, load_private, load_public, signing_key, trusted_keys
from flows.store import mirror
from integrations.settings import StanchSettings

KIND = "checkpoint.signed"
SIGNED_HEAD = "timeline.checkpoint"
VERSION = 2
_DOMAIN_V1 = "stanch-timeline-checkpoint/v1"
_DOMAIN_V2 = "stanch-timeline/v2"
ROLES = ("checkpoint", "head")
TRUST_HINT = ("add its public key to STANCH_TIMELINE_PUBKEYS (`stanch timeline key` prints it where the record "
              "was written)")


def payload(incident: str, seq: int, digest: str, role: str | None = None) -> bytes:
    """What is signed: the incident, an event's seq and its hash. ``role`` (``checkpoint`` or
    ``head``) gives the v2 form; None the v1 form both roles shared (verification of old records)."""
    if role is None:
        body: dict[str, Any] = {"d": _DOMAIN_V1, "incident": incident, "seq": seq, "hash": digest}
    else:
        if role not in ROLES:
            raise ValueError(f"unknown signature role {role!r}")
        body = {"d": _DOMAIN_V2, "role": role, "incident": incident, "seq": seq, "hash": digest}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


class Signer:
    """Signs checkpoints of one incident's timeline (``STANCH_TIMELINE_KEY`` or the installation key)."""

    def __init__(self, key: Ed25519PrivateKey, incident_id: str, timeline: Timeline) -> None:
        self.key = key
        self.kid = key_id(key.public_key())
        self.incident_id = incident_id
        self.timeline = timeline

    @classmethod
    def from_settings(cls, settings: StanchSettings, incident_id: str, timeline: Timeline) -> Signer:
        """The signer of this process: ConfigurationError when its key is unusable or inside the store."""
        return cls(signing_key(settings), incident_id, timeline)

    def sign(self, seq: int, digest: str, role: str) -> str:
        return base64.b64encode(self.key.sign(payload(self.incident_id, seq, digest, role))).decode()

    def checkpoint(self, label: str, record: Any) -> dict[str, Any]:
        """Sign the current head in a ``checkpoint.signed`` event (through ``record``, the engine's
        timeline writer), then sign that event as the head in ``timeline.checkpoint``. Returns
        ``{seq, hash, label}`` of the signed head, for the witnesses."""
        seq, digest = self.timeline.head()
        event = record(KIND, data={"v": VERSION, "label": label, "incident": self.incident_id, "seq": seq,
                                   "hash": digest, "key": self.kid,
                                   "signature": self.sign(seq, digest, "checkpoint")})
        head = {"v": VERSION, "incident": self.incident_id, "seq": event["seq"], "hash": event["hash"],
                "key": self.kid, "signature": self.sign(event["seq"], event["hash"], "head"), "label": label}
        target = self.timeline.folder / SIGNED_HEAD
        tmp = target.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(json.dumps(head, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        if self.timeline.remote is not None:  # the PostgreSQL store keeps the signed head too
            mirror(self.timeline.folder, target)
        return {"seq": event["seq"], "hash": event["hash"], "label": label}


def sign_appended(settings: StanchSettings, incident_id: str, timeline: Timeline, label: str) -> str | None:
    """After an append outside a run (the Slack app's refusals, a failed start): sign the new head,
    so the record's end stays signed. Returns a problem, never raises."""
    try:
        Signer.from_settings(settings, incident_id, timeline).checkpoint(
            label, lambda kind, data: timeline.append(kind, data=data))
    except Exception as exc:  # the append itself is done; verify will say the head is unsigned
        return f"could not sign the timeline checkpoint: {type(exc).__name__}: {exc}"
    return None


@dataclass(frozen=True)
class RecordResult:
    """``verify_record``'s answer: the chain's result, how many checkpoints were checked, whether
    the record's end is signed (and by which key, in which signature format)."""

    chain: VerifyResult
    ok: bool
    checkpoints: int = 0
    signed: bool = False
    problem: str | None = None
    key: str | None = None
    version: int = VERSION
    chain_only: bool = False

    def __str__(self) -> str:
        if not self.chain.ok:
            return str(self.chain)
        if not self.ok:
            return f"timeline NOT VERIFIED: {self.problem}"
        if self.chain_only:
            return (f"timeline chain intact: {self.chain.events} events, hash chain verified — CHAIN ONLY, "
                    "SIGNATURES NOT CHECKED: a whole rewrite with recomputed hashes would pass this check too")
        text = (f"timeline intact: {self.chain.events} events, hash chain verified, "
                f"{self.checkpoints} signed checkpoint(s) verified, head signed (key {self.key})")
        if self.version == 1:
            text += (" — v1 signatures (before head and checkpoint signatures were told apart): a record cut "
                     "back to an earlier checkpoint would pass too; compare its head with the witnesses (the "
                     "incident's Slack thread, the Prefect artifact <incident>-checkpoints)")
        return text


def chain_only(timeline_path: Path) -> RecordResult:
    """``stanch timeline verify --chain-only``: the hash chain and its head, no signatures (for
    records written before signing was the default). Says loudly what it does not check."""
    chain = verify(timeline_path)
    return RecordResult(chain, chain.ok, problem=chain.problem, chain_only=True)


def _check(keys: dict[str, Ed25519PublicKey], data: dict[str, Any], seq: int, digest: str,
           role: str | None) -> str | None:
    kid = data.get("key")
    key = keys.get(str(kid))
    if key is None:
        return f"signed by key {kid}, which is not trusted here: {TRUST_HINT}"
    try:
        key.verify(base64.b64decode(str(data.get("signature")), validate=True),
                   payload(str(data.get("incident")), seq, digest, role))
    except (InvalidSignature, ValueError, binascii.Error):
        return "signature does not match (forged or re-hashed)"
    return None


def _version(data: dict[str, Any]) -> int | str:
    """The signature format of a checkpoint event's data or a signed head: 1 (no field) or 2; the
    raw value when it is neither (a newer stanch, or garbage)."""
    v = data.get("v", 1)
    return v if v in (1, VERSION) and isinstance(v, int) and not isinstance(v, bool) else repr(v)


def verify_record(timeline_path: Path, keys: dict[str, Ed25519PublicKey],
                  incident: str | None = None) -> RecordResult:
    """The chain, then every checkpoint's signature, then the signed head (see module doc). An
    unsigned head — no ``timeline.checkpoint``, or events after it — fails, as does a signature by
    a key not in ``keys``, and (``incident`` given: the id the record is kept under) a record whose
    signatures name another incident: a signed record copied or renamed to pass for another one."""
    chain = verify(timeline_path)
    if not chain.ok:
        return RecordResult(chain, False, problem=chain.problem)
    hashes: dict[int, str] = {}
    checkpoints: dict[int, dict[str, Any]] = {}
    for event in read_events(timeline_path):
        hashes[int(event["seq"])] = str(event["hash"])
        if event.get("kind") == KIND:
            checkpoints[int(event["seq"])] = event
    last_seq = max(hashes)
    n = len(checkpoints)

    def fail(problem: str) -> RecordResult:
        return RecordResult(chain, False, n, problem=problem)

    versions: set[int] = set()
    for at, event in checkpoints.items():
        data: dict[str, Any] = event["data"] if isinstance(event.get("data"), dict) else {}
        version = _version(data)
        if not isinstance(version, int):
            return fail(f"checkpoint at seq {at} has signature format v={version}, which this stanch does not "
                        "know (written by a newer stanch? verify with that one)")
        versions.add(version)
        seq = data.get("seq")
        if not isinstance(seq, int) or seq not in hashes or hashes[seq] != data.get("hash"):
            return fail(f"checkpoint at seq {at} signed seq {seq} with a hash the record does not have: the "
                        "record was rewritten")
        problem = _check(keys, data, seq, str(data.get("hash")), "checkpoint" if version == VERSION else None)
        if problem:
            return fail(f"checkpoint at seq {at}: {problem}")
        if incident is not None and data.get("incident") != incident:
            return fail(f"checkpoint at seq {at} is signed for incident {data.get('incident')}, not {incident}: "
                        "the record was copied or renamed from another incident")
    signed_head = timeline_path.parent / SIGNED_HEAD
    try:
        head = json.loads(signed_head.read_bytes()[:8192])
        if not isinstance(head, dict):
            raise ValueError
    except FileNotFoundError:
        if n:
            return fail(f"UNSIGNED head: no {SIGNED_HEAD}, although the record carries {n} signed checkpoint(s): "
                        "the signed head was deleted")
        return fail(f"UNSIGNED head: no {SIGNED_HEAD} and no signed checkpoint — the record was never signed "
                    "(written before stanch signed by default) or its signatures were stripped; "
                    "`stanch timeline verify --chain-only` checks the hash chain alone")
    except (OSError, ValueError):
        return fail(f"{SIGNED_HEAD} is garbage (not JSON)")
    version = _version(head)
    if not isinstance(version, int):
        return fail(f"{SIGNED_HEAD} has signature format v={version}, which this stanch does not know")
    seq, digest = head.get("seq"), head.get("hash")
    if not isinstance(seq, int) or hashes.get(seq) != digest:
        return fail(f"the signed head (seq {seq}) is not in the record: the record was rewritten or truncated")
    head_event = checkpoints.get(seq)
    if head_event is None:
        return fail(f"the signed head (seq {seq}) is not a checkpoint event: a checkpoint's signature was "
                    "re-used as the head's — the record was cut back or rewritten")
    data = head_event.get("data") or {}
    if version < max(versions):
        return fail(f"the signed head is in format v{version} but the record's checkpoints are "
                    f"v{max(versions)}: it was downgraded")
    if head.get("key") != data.get("key") or head.get("incident") != data.get("incident"):
        return fail(f"the signed head (seq {seq}) names another key or incident than its checkpoint event")
    problem = _check(keys, head, seq, str(digest), "head" if version == VERSION else None)
    if problem:
        return fail(f"signed head: {problem}")
    if incident is not None and head.get("incident") != incident:
        return fail(f"the signed head is signed for incident {head.get('incident')}, not {incident}: the "
                    "record was copied or renamed from another incident")
    if seq != last_seq:
        return fail(f"UNSIGNED head: {last_seq - seq} event(s) after the last signed checkpoint (seq {seq}) — "
                    "appended later, or the run stopped before it could sign (resume it to sign again)")
    return RecordResult(chain, True, n, signed=True, key=str(head.get("key")), version=version)


__all__ = ["HEAD", "KIND", "SIGNED_HEAD", "VERSION", "RecordResult", "Signer", "chain_only", "key_id",
           "load_private", "load_public", "payload", "sign_appended", "trusted_keys", "verify_record"]
