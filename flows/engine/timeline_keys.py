"""The Ed25519 keys that sign incident timelines, and the ones a verifier trusts.

Signing is the default: every process that writes incidents signs checkpoints
(``flows.engine.checkpoints``) with

- ``STANCH_TIMELINE_KEY`` when it is set (a key file path, PEM/OpenSSH text, or base64 of the
  32-byte seed), else
- the **installation key** ``<STANCH_HOME>/keys/timeline-ed25519.pem``, created on first use
  (directory 0700, file 0600, unencrypted PKCS#8 PEM; two processes creating it at once agree on
  one key).

Either is refused when it lies inside the incident store: whoever can rewrite the record could
then re-sign it. A verifier trusts ``STANCH_TIMELINE_PUBKEYS`` plus the public half of the key
this installation signs with (``STANCH_TIMELINE_KEY``, else the installation key if it exists —
verifying never creates a key).

Owns: key loading and creation, key ids, the public line handed to other verifiers.
Must not touch: Prefect, Slack, the timeline itself (``flows.engine.checkpoints`` signs and verifies).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_ssh_private_key,
    load_ssh_public_key,
)

from integrations.errors import ConfigurationError
from integrations.settings import StanchSettings

INSTALLATION_KEY = Path("keys") / "timeline-ed25519.pem"


def key_id(key: Ed25519PublicKey) -> str:
    """First 16 hex digits of sha256 over the raw public key: names the key in a checkpoint."""
    return hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


def public_text(key: Ed25519PublicKey) -> str:
    """The public key as one STANCH_TIMELINE_PUBKEYS entry with no spaces (base64 of the 32 raw
    bytes), safe to paste into an environment variable."""
    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def public_line(key: Ed25519PublicKey) -> str:
    """``ssh-ed25519 AAAA… stanch-timeline-<key id>``: one line of a STANCH_TIMELINE_PUBKEYS file."""
    return f"{key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()} stanch-timeline-{key_id(key)}"


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


def installation_key_path(settings: StanchSettings) -> Path:
    return (Path(settings.home) / INSTALLATION_KEY).resolve()


def _refuse_inside_store(path: Path, settings: StanchSettings, what: str) -> None:
    store = settings.store_dir.resolve()
    if path.resolve().is_relative_to(store):
        raise ConfigurationError(f"{what} {path} is inside the incident store {store}: whoever can rewrite the "
                                 "record could then re-sign it; keep it elsewhere")


def ensure_installation_key(path: Path) -> Ed25519PrivateKey:
    """The key at ``path``, created first if missing (0600 in a 0700 folder). Concurrent creators
    agree: each writes its own temporary file and links it into place; the loser reads the winner's."""
    if not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            key = Ed25519PrivateKey.generate()
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process created it first: use that one
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        except OSError as exc:
            raise ConfigurationError(f"cannot create the timeline signing key {path}: {exc.strerror or exc} "
                                     "(set STANCH_HOME to a writable folder, or STANCH_TIMELINE_KEY)") from None
    try:
        return load_private(str(path))
    except ConfigurationError as exc:
        raise ConfigurationError(f"the timeline signing key {path} is unreadable ({exc}); move it away to "
                                 "start a new one (records it signed then need its public key to verify)") from None


def signing_key(settings: StanchSettings) -> Ed25519PrivateKey:
    """The key this process signs timelines with: STANCH_TIMELINE_KEY, else the installation key
    (created on first use). Either is refused inside the incident store."""
    if settings.timeline_key is not None:
        value = settings.timeline_key.get_secret_value()
        path = Path(value.strip())
        if "PRIVATE KEY" not in value and path.exists():
            _refuse_inside_store(path, settings, "STANCH_TIMELINE_KEY")
        return load_private(value)
    path = installation_key_path(settings)
    _refuse_inside_store(path, settings, "the timeline signing key")
    return ensure_installation_key(path)


def key_for_children(settings: StanchSettings) -> dict[str, str]:
    """Environment that makes a child process sign with this process's key although its own
    STANCH_HOME differs (a drill's run, whose home is the drill's sandbox folder inside the store):
    the installation key's path, created if missing; nothing when STANCH_TIMELINE_KEY is set (the
    child inherits it with the environment)."""
    if settings.timeline_key is not None:
        return {}
    path = installation_key_path(settings)
    _refuse_inside_store(path, settings, "the timeline signing key")
    ensure_installation_key(path)
    return {"STANCH_TIMELINE_KEY": str(path)}


def own_public_key(settings: StanchSettings) -> Ed25519PublicKey | None:
    """The public half of the key this installation signs with, without creating one."""
    if settings.timeline_key is not None:
        return load_private(settings.timeline_key.get_secret_value()).public_key()
    path = installation_key_path(settings)
    if not path.exists():
        return None
    return ensure_installation_key(path).public_key()


def trusted_keys(settings: StanchSettings) -> dict[str, Ed25519PublicKey]:
    """Key id -> public key: STANCH_TIMELINE_PUBKEYS and this installation's own signing key."""
    keys = load_public(settings.timeline_pubkeys) if settings.timeline_pubkeys else []
    own = own_public_key(settings)
    if own is not None:
        keys.append(own)
    return {key_id(k): k for k in keys}


__all__ = ["INSTALLATION_KEY", "ensure_installation_key", "installation_key_path", "key_for_children", "key_id",
           "load_private", "load_public", "own_public_key", "public_line", "public_text", "signing_key",
           "trusted_keys"]
