"""The post-mortem of a sandbox run, held against a golden file (issue 13), with the run's variable
parts (key ids, secret and object version ids, message ids, Slack timestamps, fingerprints and
serials, times, durations, dates, temporary paths) replaced by placeholders.

``check_postmortem_golden``: the Summary and "Exposure per asset" sections (generic runbooks).
``check_postmortem_golden(..., full=True)``: also Detection, Metrics (time to contain from the
run's start and from detection, people vs machine), Action items and the Timeline — whose rows
are sorted after masking, because steps that run concurrently append in either order.
Regenerate with STANCH_UPDATE_GOLDEN=1 and review the diff."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"
REPO = Path(__file__).resolve().parents[2]
_MASKS = [
    (re.compile(re.escape(str(REPO))), "<repo>"),
    (re.compile(re.escape(str(Path(tempfile.gettempdir()).resolve())) + r"/[^\s;|}]+"), "<tmp>"),
    (re.compile(re.escape(tempfile.gettempdir()) + r"/[^\s;|}]+"), "<tmp>"),
    (re.compile(r"AKIA[A-Z0-9]{16}"), "AKIA<key-id>"),
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?( UTC|Z|\+00:00)?"), "<time>"),
    (re.compile(r"\b\d{4}-\d\d-\d\d\b"), "<date>"),
    (re.compile(r"\b\d+(\.\d+)? (ms|s)\b|\b\d+ min \d\d s\b|\b\d+ h \d\d min\b|\b\d+ d \d+ h\b"), "<duration>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<uuid>"),
    (re.compile(r"\b[a-z]{16}-[a-z]{8}-[a-z]{4}-[a-z]{4}-[a-z]{4}-[a-z]{12}-[a-z]{6}\b"), "<message-id>"),
    (re.compile(r"\b[0-9a-f]{33,64}\b"), "<hex>"),
    (re.compile(r"(secret:[\w/.-]+)-[A-Za-z0-9]{6}\b"), r"\1-<rand>"),
    (re.compile(r"\bINC-[\w-]+"), "<incident>"),
    (re.compile(r"\bts: \d+\.\d+"), "ts: <slack-ts>"),
    (re.compile(r"\bC0AUTO\d+\b"), "<channel>"),
    (re.compile(r"[0-9a-f]{32}"), "<hash>"),
]
_SUMMARY = ("## Summary", "## Exposure per asset")
_FULL = ("## Summary", "## Detection", "## Exposure per asset", "## Timeline", "## Metrics", "## Action items")


def _mask(text: str) -> str:
    for pattern, repl in _MASKS:
        text = pattern.sub(repl, text)
    return text


def _section(postmortem: str, heading: str) -> str:
    start = postmortem.index(f"\n{heading}\n") + 1
    end = postmortem.find("\n## ", start + len(heading))
    return postmortem[start:] if end == -1 else postmortem[start:end + 1]


def _sorted_rows(section: str) -> str:
    """The timeline table with its rows in a stable order (concurrent steps append in either order)."""
    lines = section.split("\n")
    head = [i for i, line in enumerate(lines) if line.startswith("|---")]
    if not head:
        return section
    first = head[0] + 1
    last = first
    while last < len(lines) and lines[last].startswith("| "):
        last += 1
    return "\n".join([*lines[:first], *sorted(lines[first:last]), *lines[last:]])


def summary_sections(postmortem: str, *, full: bool = False) -> str:
    parts = []
    for heading in _FULL if full else _SUMMARY:
        text = _mask(_section(postmortem, heading))
        parts.append(_sorted_rows(text) if heading == "## Timeline" else text)
    return "".join(parts)


def check_postmortem_golden(folder: Path, name: str, *, full: bool = False) -> str:
    got = summary_sections((folder / "postmortem.md").read_text(encoding="utf-8"), full=full)
    path = GOLDEN / name
    if os.environ.get("STANCH_UPDATE_GOLDEN"):
        path.write_text(got, encoding="utf-8")
    assert got == path.read_text(encoding="utf-8")
    return got
