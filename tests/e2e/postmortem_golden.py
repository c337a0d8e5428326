"""The generic post-mortem summary of a sandbox run, held against a golden file (issue 13): the
Summary and "Exposure per asset" sections of ``postmortem.md`` with the run's variable parts (key
ids, secret version ids, times, durations, ARNs' random tails) replaced by placeholders.
Regenerate with STANCH_UPDATE_GOLDEN=1 and review the diff."""

from __future__ import annotations

import os
import re
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"
_MASKS = [
    (re.compile(r"AKIA[A-Z0-9]{16}"), "AKIA<key-id>"),
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?( UTC|Z|\+00:00)?"), "<time>"),
    (re.compile(r"\b\d+(\.\d+)? (ms|s)\b|\b\d+ min \d\d s\b|\b\d+ h \d\d min\b"), "<duration>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<uuid>"),
    (re.compile(r"(secret:[\w/.-]+)-[A-Za-z0-9]{6}\b"), r"\1-<rand>"),
    (re.compile(r"\bINC-[\w-]+"), "<incident>"),
    (re.compile(r"\bts: \d+\.\d+"), "ts: <slack-ts>"),
    (re.compile(r"[0-9a-f]{32}"), "<hash>"),
]


def summary_sections(postmortem: str) -> str:
    start = postmortem.index("## Summary")
    detection, exposure, end = (postmortem.index(h) for h in ("## Detection", "## Exposure per asset",
                                                               "## Root cause"))
    text = postmortem[start:detection] + postmortem[exposure:end]
    for pattern, repl in _MASKS:
        text = pattern.sub(repl, text)
    return text


def check_postmortem_golden(folder: Path, name: str) -> str:
    got = summary_sections((folder / "postmortem.md").read_text(encoding="utf-8"))
    path = GOLDEN / name
    if os.environ.get("STANCH_UPDATE_GOLDEN"):
        path.write_text(got, encoding="utf-8")
    assert got == path.read_text(encoding="utf-8")
    return got
