"""The incident timeline: an append-only, hash-chained JSON-lines event log.

Owns: writing events to ``<incident>/timeline.jsonl`` (one JSON object per line, each carrying
``seq``, ``prev`` = the previous event's hash and ``hash`` = sha256 of its own canonical form),
reading them back, and verifying the chain (edited, dropped, inserted or reordered lines).
It is also the undo log: succeeded steps record their compensation here.

Must not touch: Prefect, boto3, Slack. Secrets are scrubbed by the caller-provided redactor
before anything is written.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
FILENAME = "timeline.jsonl"
HEAD = "timeline.head"
# fsynced kinds; "intent" so a recorded intent is on disk before the send it guards, "action"
# (action.observed) so a before-image is on disk before the change it describes
DURABLE = frozenset({"run", "step", "approval", "compensation", "rollback", "intent", "action", "checkpoint"})


def _sync(fd: int) -> None:
    """Make what was written to ``fd`` durable. ``fdatasync`` where there is one: it flushes the
    data and what reading it back needs (the size of an appended file), not the modification
    time — on ext4 ~8x less wall time than ``fsync`` under the lock (no journal commit for an
    in-place head rewrite) and ~40 % less CPU."""
    (os.fdatasync if hasattr(os, "fdatasync") else os.fsync)(fd)


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoformat(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _canonical(event: dict[str, Any]) -> bytes:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


_encode_str = json.encoder.encode_basestring  # what json.dumps(str, ensure_ascii=False) does (C)


def _scalar(value: Any) -> str:
    """``json.dumps(value, ensure_ascii=False)`` for the event's top-level fields (strings, None,
    the seq), without building an encoder per call."""
    if value.__class__ is str:
        return _encode_str(value)
    if value is None:
        return "null"
    if value.__class__ is int:
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def _event_json(event: dict[str, Any], data_json: bytes, *, with_hash: bool = False) -> bytes:
    """``_canonical(event)`` (without or with ``hash``) from an already-serialised ``data``:
    the same bytes, since keys are sorted and separators compact at every level."""
    head = '{"actor":' + _scalar(event["actor"]) + ',"data":'
    tail = (',"item":' + _scalar(event["item"]) + ',"kind":' + _scalar(event["kind"]) + ',"prev":'
            + _scalar(event["prev"]) + ',"seq":' + _scalar(event["seq"]) + ',"step":' + _scalar(event["step"])
            + ',"ts":' + _scalar(event["ts"]) + "}")
    if with_hash:
        tail = ',"hash":' + _scalar(event["hash"]) + tail
    return head.encode() + data_json + tail.encode()


def event_hash(event: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of every field but ``hash`` itself."""
    body = {k: v for k, v in event.items() if k != "hash"}
    return hashlib.sha256(_canonical(body)).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    events: int
    problem: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        if self.ok:
            return f"timeline intact: {self.events} events, hash chain verified"
        return f"timeline BROKEN at line {self.line}: {self.problem}"


class Timeline:
    """Append-only writer for one incident. Thread- and process-safe (lock + flock).

    Every event is written and flushed before ``append`` returns, so it survives the death of
    the process (the OS has it). Run, step, approval and compensation events are also fsynced,
    with everything before them, so they survive a power loss; per-item and per-call events
    (many, and cheap to redo because actions check before they act) ride on the next fsync.
    The last (seq, hash) is cached and only re-read, from the end of the file, when another
    process appended (the file size changed).
    """

    def __init__(self, folder: Path, redact: Callable[[Any], Any] | None = None, remote: Any = None) -> None:
        self.folder = folder
        self.remote = remote  # flows.store.postgres.PostgresStore: the chain lives there (the file is a copy)
        self._local_count: int | None = None  # events in the working copy as this writer last left it
        self._local_size = -1
        self.path = folder / FILENAME
        self._redact = redact or (lambda v: v)
        self._lock = threading.Lock()
        self._cached: tuple[int, int, str] | None = None  # (file size, seq, hash)
        self._fh: Any = None  # kept open: opening per event costs more than the write
        self._head_fd: int | None = None
        folder.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
            if self._head_fd is not None:
                os.close(self._head_fd)
                self._head_fd = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def _tail(self, fh: Any) -> tuple[int, str]:
        size = os.fstat(fh.fileno()).st_size
        if self._cached is not None and self._cached[0] == size:
            return self._cached[1], self._cached[2]
        last = _last_line(fh, size)
        if last is None:
            return 0, GENESIS
        event = json.loads(last)
        return int(event["seq"]), str(event["hash"])

    def append(self, kind: str, *, step: str | None = None, item: str | None = None,
               data: dict[str, Any] | None = None, actor: str = "stanch",
               ts: datetime | None = None) -> dict[str, Any]:
        durable = kind.split(".", 1)[0] in DURABLE
        clean = self._redact(data or {})  # redaction and the data's JSON stay outside the lock
        data_json = _canonical(clean)
        if self.remote is not None:
            return self._append_remote(kind, step, item, actor, clean, data_json, ts)
        # _event_json's bytes in parts, most of them built before the lock: the line is
        # ``head + ,"hash":… + tail`` and what is hashed is ``head + tail`` (keys sorted: actor,
        # data, hash, item, kind, prev, seq, step, ts)
        head = ('{"actor":' + _scalar(actor) + ',"data":').encode() + data_json
        before_prev = ',"item":' + _scalar(item) + ',"kind":' + _scalar(kind) + ',"prev":'
        before_ts = ',"step":' + _scalar(step) + ',"ts":'
        with self._lock:
            if self._fh is None or self._fh.closed:
                self._fh = self.path.open("a+b")
                self._head_fd = os.open(self.folder / HEAD, os.O_WRONLY | os.O_CREAT, 0o644)
            fh = self._fh
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                seq, prev = self._tail(fh)
                # stamped here, under the lock, so that time never goes backwards along the chain
                # (stamped before it, two threads' events came out .533 then .532)
                stamp = isoformat(ts or utcnow())
                event: dict[str, Any] = {"seq": seq + 1, "ts": stamp, "kind": kind, "step": step, "item": item,
                                         "actor": actor, "data": clean, "prev": prev}
                tail = (before_prev + _scalar(prev) + ',"seq":' + str(seq + 1) + before_ts + _scalar(stamp)
                        + "}").encode()
                event["hash"] = hashlib.sha256(head + tail).hexdigest()
                fh.write(head + b',"hash":"' + event["hash"].encode() + b'"' + tail + b"\n")
                fh.flush()
                if durable:
                    _sync(fh.fileno())
                self._cached = (fh.tell(), event["seq"], event["hash"])
                _write_head(self._head_fd, event["seq"], event["hash"], durable)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return event

    def _append_remote(self, kind: str, step: str | None, item: str | None, actor: str, clean: Any,
                       data_json: bytes, ts: datetime | None) -> dict[str, Any]:
        """PostgreSQL store: the database assigns the place in the chain (a concurrent writer makes
        the insert retry on the new head); the local file is then brought up to it."""
        from flows.store import sync_timeline

        def make(seq: int, prev: str) -> tuple[dict[str, Any], bytes]:
            stamp = isoformat(ts or utcnow())  # at the place in the chain (a retry on a new head re-stamps)
            event: dict[str, Any] = {"seq": seq, "ts": stamp, "kind": kind, "step": step, "item": item,
                                     "actor": actor, "data": clean, "prev": prev}
            event["hash"] = hashlib.sha256(_event_json(event, data_json)).hexdigest()
            return event, _event_json(event, data_json, with_hash=True)

        built: dict[int, bytes] = {}

        def make_and_keep(seq: int, prev: str) -> tuple[dict[str, Any], bytes]:
            event, line = make(seq, prev)
            built[seq] = line
            return event, line

        with self._lock:
            event = self.remote.append(self.folder.name, make_and_keep, GENESIS)
            seq = int(event["seq"])
            if self._local_count == seq - 1:  # the working copy was at the head: add just this line
                with self.path.open("ab") as fh:
                    fcntl.flock(fh, fcntl.LOCK_EX)
                    try:
                        if os.fstat(fh.fileno()).st_size == self._local_size:
                            fh.write(built[seq] + b"\n")
                            fh.flush()
                            self._local_count, self._local_size = seq, fh.tell()
                            fd = os.open(self.folder / HEAD, os.O_WRONLY | os.O_CREAT, 0o644)
                            try:  # the working copy's head, as the database's (same fixed-width record)
                                _write_head(fd, seq, str(event["hash"]), durable=False)
                            finally:
                                os.close(fd)
                            return event
                    finally:
                        fcntl.flock(fh, fcntl.LOCK_UN)
            self._local_count = sync_timeline(self.remote, self.folder.name, self.folder)  # someone else wrote
            self._local_size = self.path.stat().st_size
        return event

    def sync(self) -> None:
        """Bring the local file up to the PostgreSQL store (no-op for the folder store)."""
        if self.remote is not None:
            from flows.store import sync_timeline

            with self._lock:
                self._local_count = sync_timeline(self.remote, self.folder.name, self.folder)
                self._local_size = self.path.stat().st_size

    def events(self) -> list[dict[str, Any]]:
        self.sync()
        return list(read_events(self.path))

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last event (0, GENESIS when empty): what a checkpoint signs."""
        if self.remote is not None:
            return self.remote.head(self.folder.name) or (0, GENESIS)
        with self._lock:
            if not self.path.exists():
                return 0, GENESIS
            with self.path.open("rb") as fh:
                return self._tail(fh)


def _last_line(fh: Any, size: int) -> bytes | None:
    """The last non-empty line of the file, read backwards from the end in blocks."""
    block, pos, buf = 8192, size, b""
    while pos > 0:
        step = min(block, pos)
        pos -= step
        fh.seek(pos)
        buf = fh.read(step) + buf
        lines = [ln for ln in buf.split(b"\n") if ln.strip()]
        if len(lines) >= 2 or (pos == 0 and lines):
            return lines[-1]
    return None


_HEAD_WIDTH = 96


def _write_head(fd: int | None, seq: int, digest: str, durable: bool) -> None:
    """Overwrite the fixed-width head record in place (no rename per event)."""
    assert fd is not None
    record = f"{seq} {digest}".ljust(_HEAD_WIDTH - 1).encode() + b"\n"
    os.pwrite(fd, record, 0)
    if durable:
        _sync(fd)


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with path.open("rb") as fh:
        for raw in fh:
            if raw.strip():
                yield json.loads(raw)


def verify(path: Path) -> VerifyResult:
    """Check every line: parseable, seq contiguous from 1, ``prev`` links, ``hash`` matches; then
    the head. Reads under a shared lock, so a writer appending right now (it holds the exclusive
    one while it writes a line and its head) is never seen half-way."""
    if not path.exists():
        return VerifyResult(False, 0, f"{path} does not exist", None)
    with path.open("rb") as fh:
        fcntl.flock(fh, fcntl.LOCK_SH)
        try:
            return _verify_locked(fh, path)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _verify_locked(fh: Any, path: Path) -> VerifyResult:
    prev = GENESIS
    count = 0
    for lineno, raw in enumerate(fh, start=1):
        if not raw.strip():
            return VerifyResult(False, count, "blank line inserted", lineno)
        try:
            event = json.loads(raw)
        except ValueError:
            return VerifyResult(False, count, "line is not valid JSON (edited?)", lineno)
        if not isinstance(event, dict) or "hash" not in event:
            return VerifyResult(False, count, "line is not a timeline event", lineno)
        if event.get("seq") != count + 1:
            return VerifyResult(False, count, f"expected seq {count + 1}, found {event.get('seq')} "
                                "(line dropped, inserted or reordered)", lineno)
        if event.get("prev") != prev:
            return VerifyResult(False, count, "previous-hash link broken (line dropped or reordered)",
                                lineno)
        if event_hash(event) != event["hash"]:
            return VerifyResult(False, count, "content does not match its hash (line edited)", lineno)
        prev = event["hash"]
        count += 1
    if count == 0:
        return VerifyResult(False, 0, "timeline is empty", None)
    problem = head_problem(path.parent / HEAD, count, prev)
    if problem is not None:
        return VerifyResult(False, count, problem, count)
    return VerifyResult(True, count)


_HEAD_RECORD = re.compile(r"^(\d{1,18}) ([0-9a-f]{64})$")


def read_head(head: Path) -> tuple[int, str]:
    """(seq, hash) from ``timeline.head``; ValueError saying what is wrong with it."""
    try:
        text = head.read_bytes()[:4096].decode("ascii").strip()
    except FileNotFoundError:
        raise ValueError(f"{HEAD} is missing: the end of the record cannot be checked (deleted head, "
                         "or a truncated/extended timeline)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{HEAD} is unreadable ({type(exc).__name__}): expected 'SEQ SHA256'") from None
    m = _HEAD_RECORD.match(text)
    if m is None:
        raise ValueError(f"{HEAD} is garbage (expected 'SEQ SHA256', found {text[:40]!r})")
    return int(m.group(1)), m.group(2)


def head_problem(head: Path, count: int, last_hash: str) -> str | None:
    """Why ``timeline.head`` does not describe a file of ``count`` events ending in ``last_hash``."""
    try:
        seq, digest = read_head(head)
    except ValueError as exc:
        return str(exc)
    if seq > count:
        return f"the last {seq - count} event(s) were dropped (head says seq {seq}, file ends at {count})"
    if seq < count:
        return (f"{count - seq} event(s) after the head (head says seq {seq}, file ends at {count}): "
                "lines appended without the writer")
    if digest != last_hash:
        return "the head's hash is not the last event's: the record was rewritten"
    return None
