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
