"""Signed CLI approval decisions: an approver's Ed25519 key is their identity on the command line.

Owns: the approvers file (``STANCH_APPROVER_KEYS_FILE``: one ``<Slack user id> <OpenSSH ed25519
public key>`` per line, ``#`` comments), the canonical bytes a decision signs (incident, step,
approve/deny, approver, comment, time, nonce), signing with the approver's private key (an
unencrypted or passphrase-protected OpenSSH/PKCS#8 Ed25519 key, e.g. from ``ssh-keygen -t
ed25519``), and verifying a decision the run received: the key of the approver id it names,
signed at most ``MAX_AGE`` seconds ago, for this incident and step. Whoever runs ``stanch approve
--as U0LEAD2`` must therefore hold U0LEAD2's private key; the run, not the CLI, checks it.

Must not touch: Prefect, Slack, the approval rules (``flows.engine.approval_policy``).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    load_pem_private_key,
    load_ssh_private_key,
    load_ssh_public_key,
)

from integrations.errors import ConfigurationError

MAX_AGE = 600.0  # a signed decision older than this (or from the future) is refused
CLOCK_SKEW = 60.0


@dataclass(frozen=True)
class SignedFields:
    incident: str
    step: str
    approve: bool
    approver: str  # the bare Slack id, e.g. U0LEAD1
    comment: str
    signed_at: float
    nonce: str

    def message(self) -> bytes:
        return json.dumps({"v": 1, "incident": self.incident, "step": self.step, "approve": self.approve,
                           "approver": self.approver, "comment": self.comment,
                           "signed_at": round(self.signed_at, 3), "nonce": self.nonce},
                          sort_keys=True, separators=(",", ":")).encode()


def load_private_key(path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the approver key {path}: {exc.strerror or exc}") from None
    key: object
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            key = load_ssh_private_key(data, password=passphrase)
        else:
            key = load_pem_private_key(data, password=passphrase)
    except TypeError as exc:  # encrypted without a passphrase, or a passphrase for a plain key
        raise ConfigurationError(f"approver key {path}: {exc}") from None
    except ValueError:
        raise ConfigurationError(f"approver key {path}: not a readable private key (wrong passphrase?)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"approver key {path}: not an Ed25519 key (ssh-keygen -t ed25519)")
    return key


def sign(key: Ed25519PrivateKey, fields: SignedFields) -> str:
    return base64.b64encode(key.sign(fields.message())).decode()


def load_public_keys(path: Path) -> dict[str, list[Ed25519PublicKey]]:
    """``{approver id: [keys]}`` from the approvers file; ConfigurationError naming the line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read STANCH_APPROVER_KEYS_FILE {path}: {type(exc).__name__}") from None
    out: dict[str, list[Ed25519PublicKey]] = {}
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        who, _, rest = line.partition(" ")
        try:
            key = load_ssh_public_key(rest.strip().encode())
        except (ValueError, TypeError):
            raise ConfigurationError(f"{path}:{n}: expected '<Slack user id> ssh-ed25519 AAAA…'") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigurationError(f"{path}:{n}: only ssh-ed25519 keys are accepted")
        out.setdefault(who, []).append(key)
    return out


def verify(keys_file: Path | None, fields: SignedFields, signature: str, now: float | None = None) -> str | None:
    """Why this CLI decision does not prove who sent it, or None when it does."""
    if keys_file is None:
        return ("CLI decisions must be signed with the approver's key, and this run has no "
                "STANCH_APPROVER_KEYS_FILE")
    if not signature:
        return f"the decision is not signed (stanch approve signs with {fields.approver}'s key: --key)"
    try:
        keys = load_public_keys(keys_file).get(fields.approver, [])
    except ConfigurationError as exc:
        return str(exc)
    if not keys:
        return f"STANCH_APPROVER_KEYS_FILE has no key for {fields.approver}"
    age = (time.time() if now is None else now) - fields.signed_at
    if age > MAX_AGE or age < -CLOCK_SKEW:
        return f"the signed decision is {age:.0f}s old (at most {MAX_AGE:.0f}s): sign it again"
    try:
        raw = base64.b64decode(signature, validate=True)
    except ValueError:
        return "the decision's signature is not base64"
    for key in keys:
        try:
            key.verify(raw, fields.message())
            return None
        except InvalidSignature:
            continue
    return f"the signature does not match {fields.approver}'s key"
