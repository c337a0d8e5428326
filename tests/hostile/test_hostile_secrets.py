"""Run the hostile redaction corpus (tests/hostile/secrets/*.json; format in its README)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from flows.engine.redaction import Redactor, masked_path

CASES = sorted((Path(__file__).parent / "secrets").glob("*.json"))


def _pem(kind: str) -> str:
    key: Any = rsa.generate_private_key(65537, 2048) if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())
    fmt = serialization.PrivateFormat.TraditionalOpenSSL if kind == "rsa" else serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


def _materialise(text: str) -> tuple[str, list[str]]:
    bodies: list[str] = []
    for token in ("ec-json", "ec-cut", "ec", "rsa"):
        placeholder = "{{PEM:" + token + "}}"
        while placeholder in text:
            pem = _pem("rsa" if token == "rsa" else "ec")
            bodies += [ln for ln in pem.splitlines() if ln and not ln.startswith("-----")]
            shown = {"ec-json": json.dumps(pem)[1:-1].replace("\\", "\\\\"),  # JSON text inside a JSON string
                     "ec-cut": json.dumps(pem[: len(pem) // 2])[1:-1]}
            text = text.replace(placeholder, shown.get(token, json.dumps(pem)[1:-1]), 1)
    return text, bodies


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_hostile_redaction_case(path: Path) -> None:
    raw, bodies = _materialise(path.read_text(encoding="utf-8"))
    case = json.loads(raw)
    out = Redactor(set(case["secrets"]))(case["value"])
    dumped = json.dumps(out, ensure_ascii=False)
    if case.get("unchanged"):
        assert out == case["value"]
    for needle in case.get("must_not_contain", []):
        if needle == "PEM":
            cut = [b for b in bodies if len(b) >= 16]
            assert not [b for b in cut if b[:16] in dumped.replace("\\n", "\n")], "key material survived"
        else:
            assert needle not in dumped.replace("\\n", "\n"), needle
    for needle in case.get("must_contain", []):
        assert needle in dumped.replace('\\"', '"'), (needle, dumped)
    assert masked_path(case["value"]) == case.get("masked_path")


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [str(k), *_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_the_redactor_fast_path_skips_no_pattern() -> None:
    """``Redactor.text`` runs the material patterns only when a cheap pre-scan finds one of their
    prefixes: on every corpus string (and variants), it masks exactly what all patterns would."""
    from flows.engine.redaction import _PATTERNS

    def every_pattern(text: str) -> str:
        for pat in _PATTERNS:
            text = pat.sub(lambda m: (m.group(1) + m.group(2) + "[redacted]") if m.re.groups >= 2
                           else "[redacted]", text)
        return text

    texts = [s for p in CASES for s in _strings(json.loads(_materialise(p.read_text(encoding="utf-8"))[0]))]
    texts += ["AWS_Secret_Access_Key = " + "a" * 40, "SecretAccessKey: " + "b/" * 20, "x gho_" + "c" * 30,
              "github_pat_" + "d" * 40, "xoxp-12345678", "plain ci-deploy-001", "ghp_short", "210000000001"]
    r = Redactor()
    for text in texts + [t.upper() for t in texts] + [t.lower() for t in texts]:
        assert r.text(text) == every_pattern(text), text
