"""Keep secrets out of every output (logs, reports, timeline, artifacts, Slack).

Owns: ``Redactor`` — applied at the *edges*, where something is written or shown, never to the
values steps hand each other. A value is masked when it is

* **declared secret**: the value of a ``secret: true`` input, or a string an action registered
  with ``ctx.redact`` (new key material, a CA key read from Secrets Manager);
* **structurally secret material**: a PEM private key, a Slack token (``xox…``), a GitHub token,
  an AWS secret access key next to its field name;
* held by a field whose name says it *is* secret material (``password``, ``passphrase``,
  ``private_key``, ``secret_access_key``, ``session_token``, ``access_token``, ``api_key``,
  ``secret_string``, ``secret_value`` …) — a safety net for actions that forget ``ctx.redact``.

Field names that merely *mention* a secret (``secret_name``, ``signing_secret``, ``ca_secret``,
``secret_arn``, ``secret_id``) hold names and ids: a secret's name is not a secret, and masking it
sends a real key to a secret literally named ``[redacted]`` (issue 8).

Must not touch: Prefect, boto3, Slack.
"""

from __future__ import annotations

import functools
import re
import threading
from typing import Any

MASK = "[redacted]"
_MATERIAL_FIELD = re.compile(
    r"(?:^|[_-])(password|passwd|passphrase|private[_-]?key(?:[_-]?pem)?|secret[_-]?access[_-]?key"
    r"|session[_-]?token|access[_-]?token|refresh[_-]?token|bearer[_-]?token|api[_-]?key"
    r"|secret[_-]?string|secret[_-]?value|key[_-]?material)$",
    re.IGNORECASE,
)
_PATTERNS = [
    re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?-----END [A-Z0-9 ]*PRIVATE KEY-----", re.DOTALL),
    re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[A-Za-z0-9+/=\s\\]*"),  # a truncated key
    re.compile(r"xox[abeprs]-[A-Za-z0-9-]{8,}"),
    re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}\b|\bgithub_pat_[A-Za-z0-9_]{40,}\b"),
    re.compile(r"(?i)(aws_secret_access_key|secretaccesskey)(\W{1,4})[A-Za-z0-9/+=]{40}"),
]


# A string none of _PATTERNS can match contains none of these (each pattern starts with one of
# them): one C scan instead of five substitutions for the many strings that hold no secret.
_MAY_MATCH = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----|xox[abeprs]-|\b(?:ghp|gho|ghu|ghs|ghr)_|\bgithub_pat_"
    r"|(?i:aws_secret_access_key|secretaccesskey)"
)


@functools.lru_cache(maxsize=4096)
def is_material_field(name: str) -> bool:
    """Whether a field with this name holds secret material itself (not a secret's name or id)."""
    return bool(_MATERIAL_FIELD.search(name))


def masked_path(value: Any, path: str = "") -> str | None:
    """Where (``a.b[0]``) a string in ``value`` contains ``MASK``, or None: a redacted value must
    never flow into an action."""
    if isinstance(value, str):
        return (path or "(value)") if MASK in value else None
    if isinstance(value, dict):
        for k, v in value.items():
            hit = masked_path(v, f"{path}.{k}" if path else str(k))
            if hit is not None:
                return hit
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            hit = masked_path(v, f"{path}[{i}]")
            if hit is not None:
                return hit
    return None


class Redactor:
    """Masks declared secrets and secret-looking material in text and JSON-like values."""

    def __init__(self, secrets: set[str] | None = None) -> None:
        self._secrets: set[str] = {s for s in (secrets or set()) if s and len(s) >= 4}
        self._lock = threading.Lock()
        self._known: tuple[str, ...] = self._longest_first()  # replaced (never mutated) on add

    def _longest_first(self) -> tuple[str, ...]:
        return tuple(sorted(self._secrets, key=len, reverse=True))

    def add(self, *values: str) -> None:
        if not values:
            return
        with self._lock:
            before = len(self._secrets)
            self._secrets.update(v for v in values if isinstance(v, str) and len(v) >= 4)
            if len(self._secrets) != before:
                self._known = self._longest_first()

    def text(self, value: str) -> str:
        out = value
        for secret in self._known:
            if secret in out:
                out = out.replace(secret, MASK)
        if _MAY_MATCH.search(out) is None:
            return out
        for pat in _PATTERNS:
            out = pat.sub(lambda m: (m.group(1) + m.group(2) + MASK) if m.re.groups >= 2 else MASK, out)
        return out

    def __call__(self, value: Any, _key: str | None = None) -> Any:
        if isinstance(value, str):
            if _key is not None and value and is_material_field(_key):
                return MASK
            return self.text(value)
        if isinstance(value, dict):
            return {k: self(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        return value
