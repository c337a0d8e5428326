"""The timeline is the audit record: any edit, drop, insert or reorder must be detected."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from flows.engine.redaction import Redactor
from flows.engine.timeline import Timeline, verify


@pytest.fixture
def timeline(tmp_path: Path) -> Timeline:
    tl = Timeline(tmp_path / "INC-1")
    for i in range(5):
        tl.append("step.succeeded", step=f"s{i}", data={"output": {"n": i}})
    return tl


def test_intact_chain_verifies(timeline: Timeline) -> None:
    result = verify(timeline.path)
    assert result.ok and result.events == 5


def test_one_byte_edit_is_detected(timeline: Timeline) -> None:
    raw = bytearray(timeline.path.read_bytes())
    pos = raw.index(b'"n":3') + 4
    raw[pos] = ord("7")
    timeline.path.write_bytes(bytes(raw))
    result = verify(timeline.path)
    assert not result.ok and result.line == 4 and "edited" in (result.problem or "")


def test_dropped_line_is_detected(timeline: Timeline) -> None:
    lines = timeline.path.read_text().splitlines(keepends=True)
    timeline.path.write_text("".join(lines[:2] + lines[3:]))
    result = verify(timeline.path)
    assert not result.ok and result.line == 3


def test_dropped_last_line_is_detected(timeline: Timeline) -> None:
    lines = timeline.path.read_text().splitlines(keepends=True)
    timeline.path.write_text("".join(lines[:-1]))
    result = verify(timeline.path)
    assert not result.ok and "dropped" in (result.problem or "")


def test_reordered_lines_are_detected(timeline: Timeline) -> None:
    lines = timeline.path.read_text().splitlines(keepends=True)
    lines[1], lines[2] = lines[2], lines[1]
    timeline.path.write_text("".join(lines))
    assert not verify(timeline.path).ok


def test_rehashed_edit_still_breaks_the_chain(timeline: Timeline) -> None:
    """Recomputing the edited line's own hash is not enough: the next line links to the old one."""
    from flows.engine.timeline import event_hash

    lines = timeline.path.read_text().splitlines()
    ev = json.loads(lines[1])
    ev["data"] = {"output": {"n": 99}}
    ev["hash"] = event_hash(ev)
    lines[1] = json.dumps(ev, sort_keys=True, separators=(",", ":"))
    timeline.path.write_text("\n".join(lines) + "\n")
    result = verify(timeline.path)
    assert not result.ok and result.line == 3


def test_concurrent_appends_keep_the_chain(tmp_path: Path) -> None:
    tl = Timeline(tmp_path / "INC-2")
    threads = [
        threading.Thread(target=lambda i=i: [tl.append("x", item=str(i)) for _ in range(20)])
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = verify(tl.path)
    assert result.ok and result.events == 160
    stamps = [json.loads(line)["ts"] for line in tl.path.read_text().splitlines()]
    assert stamps == sorted(stamps)  # time never goes backwards along the chain (stamped under the lock)


def test_secrets_are_redacted_before_writing(tmp_path: Path) -> None:
    tl = Timeline(tmp_path / "INC-3", redact=Redactor({"s3cr3t-value"}))
    tl.append("x", data={"note": "token is s3cr3t-value", "private_key": "-----BEGIN"})
    text = tl.path.read_text()
    assert "s3cr3t-value" not in text and "-----BEGIN" not in text
    assert verify(tl.path).ok


def test_lines_are_the_canonical_json_of_their_events(tmp_path: Path) -> None:
    """The writer builds each line from pieces (no encoder per field): byte for byte what
    ``verify`` and ``event_hash`` recompute, for unicode, escapes, empty and nested data."""
    from flows.engine.timeline import _canonical

    tl = Timeline(tmp_path / "inc")
    tl.append("run.started", actor="Zoë \"ops\" \\ <2028>\u2028", data={"b": [1, None, "ü\n"], "a": {"z": 1.5}})
    tl.append("item.started", step="step-é", item="acct/ci-ü")
    tl.append("action.observed", step="s", item=None, data={"subject": "\x01\t", "state": {}})
    lines = (tmp_path / "inc" / "timeline.jsonl").read_bytes().splitlines()
    for line in lines:
        assert line == _canonical(json.loads(line))
    assert verify(tmp_path / "inc" / "timeline.jsonl").ok
