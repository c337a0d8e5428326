"""Keep secrets out of every output (logs, reports, timeline, artifacts, Slack).

Owns: ``Redactor`` — a set of known secret strings (secret inputs, key material an action
registered with ``ctx.redact``) plus structural rules (fields named like secrets, PEM private
keys, Slack tokens, AWS secret keys next to their field name) applied to any JSON-like value.
Must not touch: Prefect, boto3, Slack.
"""

from __future__ import annotations

import re
import threading
from typing import Any

MASK = "[redacted]"
_SECRET_FIELD = re.compile(
    r"(secret|password|passphrase|private[_-]?key|token|credential|session[_-]?token|signing[_-]?key_pem)",
    re.IGNORECASE,
)
_SAFE_FIELD = re.compile(r"(_id|_ids|_arn|_name|_version_id|fingerprint|idempotency)$", re.IGNORECASE)
_PATTERNS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL),
    re.compile(r"xox[abprs]-[A-Za-z0-9-]{8,}"),
    re.compile(r"(?i)(aws_secret_access_key|secretaccesskey)(\W{1,4})[A-Za-z0-9/+=]{40}"),
]


class Redactor:
    def __init__(self, secrets: set[str] | None = None) -> None:
        self._secrets: set[str] = {s for s in (secrets or set()) if s and len(s) >= 4}
        self._lock = threading.Lock()

    def add(self, *values: str) -> None:
        with self._lock:
            self._secrets.update(v for v in values if isinstance(v, str) and len(v) >= 4)

    def text(self, value: str) -> str:
        out = value
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in out:
                out = out.replace(secret, MASK)
        for pat in _PATTERNS:
            out = pat.sub(lambda m: (m.group(1) + m.group(2) + MASK) if m.re.groups >= 2 else MASK, out)
        return out

    def __call__(self, value: Any, _key: str | None = None) -> Any:
        if _key is not None and _SECRET_FIELD.search(_key) and not _SAFE_FIELD.search(_key) \
                and isinstance(value, str) and value:
            return MASK
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        return value
