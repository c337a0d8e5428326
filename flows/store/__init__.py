"""Where the incident record lives: a folder (the default) or PostgreSQL.

Owns: choosing the store from ``STANCH_STORE`` (``current()``: None for a folder, a
``PostgresStore`` for ``postgresql://…``), and the folder form of a record held in the database
(``export_record``: the byte-identical ``<incident>/`` folder — timeline.jsonl, timeline.head,
timeline.checkpoint, plan.json, incident.json, reports/, postmortem.md, scorecards — exactly as
stored, which ``stanch export`` writes and ``stanch timeline verify`` checks; ``materialize``: the
same folder as the engine's local working copy, its head following the lines it holds), plus
``mirror`` (a file the engine wrote goes to the database too).

With PostgreSQL the database is the record: every timeline append goes through its chain
(``flows.store.postgres``), every document is written to it, and a process that opens an
incident first makes its working copy equal to it (lines missing appended, a copy that is longer
or disagrees rewritten) — so a run started by a worker on one machine is resumed, approved,
verified or exported from any other. A database that cannot be reached is ``StoreUnavailable``
(``flows.store.postgres``), a configuration error.

Must not touch: Prefect, boto3, Slack, the engine (the engine calls in, never the reverse).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flows.store.postgres import PostgresStore

__all__ = ["HEAD_DOC", "PostgresStore", "current", "export_record", "is_url", "materialize", "mirror",
           "open_store"]

_stores: dict[tuple[str, int], PostgresStore] = {}
_lock = threading.Lock()
TIMELINE = "timeline.jsonl"


def __getattr__(name: str) -> Any:
    """``PostgresStore`` and ``HEAD_DOC`` load psycopg only when asked for: a folder store (and
    ``stanch approve``, which opens an incident) never pays for importing it (~0.25 s)."""
    if name in ("PostgresStore", "HEAD_DOC"):
        from flows.store import postgres

        return getattr(postgres, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_url(value: str | None) -> bool:
    return bool(value) and str(value).startswith(("postgresql://", "postgres://"))


def open_store(url: str) -> PostgresStore:
    """The process's store for ``url`` (one per process: connections never cross a fork)."""
    from flows.store.postgres import PostgresStore

    key = (url, os.getpid())
    with _lock:
        if key not in _stores:
            _stores[key] = PostgresStore(url)
        return _stores[key]


def current() -> PostgresStore | None:
    """The PostgreSQL store named by ``STANCH_STORE``, or None when the store is a folder."""
    url = os.environ.get("STANCH_STORE")
    return open_store(url) if url and is_url(url) else None


def _write(path: Path, body: bytes) -> None:
    if path.exists() and path.read_bytes() == body:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.sync")  # writers never share one
    tmp.write_bytes(body)
    os.replace(tmp, path)


def materialize(store: PostgresStore, incident: str, folder: Path) -> int:
    """Make ``folder`` (``<dir>/<incident>``) the database's record: its timeline lines (missing
    ones appended; a local file that disagrees — longer, or diverging — is rewritten: the database
    is the record) and every document. Returns the number of events."""
    from flows.store.postgres import HEAD_DOC
    count = sync_timeline(store, incident, folder)
    for name, doc in store.documents(incident).items():
        if name == HEAD_DOC:
            continue  # written by sync_timeline, from the lines it wrote
        target = (folder / name).resolve()
        if not target.is_relative_to(folder.resolve()):
            continue  # a document name never leaves the incident folder
        _write(target, doc)
    return count


def export_record(store: PostgresStore, incident: str, folder: Path) -> int:
    """Write the record exactly as the database holds it into ``folder`` (``<dir>/<incident>``,
    new or empty): its lines and every document — the stored ``timeline.head`` and
    ``timeline.checkpoint`` included, never a head recomputed from the lines, so a truncation or
    an edit inside the database shows when the export is verified. One consistent snapshot.
    Returns the number of events."""
    lines, docs = store.snapshot(incident)
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / TIMELINE, b"".join(line + b"\n" for _, line in lines))
    for name, doc in docs.items():
        target = (folder / name).resolve()
        if target.is_relative_to(folder.resolve()):  # a document name never leaves the incident folder
            _write(target, doc)
    return len(lines)


def mirror(folder: Path, path: Path) -> None:
    """Put the file ``path`` (inside the incident ``folder``) into the PostgreSQL store, if any."""
    store = current()
    if store is None or not path.is_file():
        return
    store.put(folder.name, path.relative_to(folder).as_posix(), path.read_bytes())


def sync_timeline(store: PostgresStore, incident: str, folder: Path) -> int:
    """Make the local ``timeline.jsonl`` the database's lines (under an exclusive flock, so two
    local writers never interleave), and write its head record; the number of events. The
    database is the record: the lines the copy lacks are appended, and a copy that disagrees —
    longer than the database (events deleted there), or its next line not the database's next
    — is rewritten from the database (so ``timeline show``, ``postmortem`` and ``resume`` see
    what the database holds)."""
    import fcntl

    from flows.store.postgres import _HEAD_WIDTH, HEAD_DOC

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / TIMELINE
    with path.open("a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            fh.seek(0)
            local = fh.read().count(b"\n")
            new = list(store.lines(incident, after=local))
            if new:
                diverged = new[0][0] != local + 1
            else:  # nothing after the copy's end: is the database as long as the copy?
                head = store.head(incident) if local else None
                diverged = bool(local) and (head[0] if head else 0) < local
            if diverged:  # the database is the record
                fh.truncate(0)
                new, local = list(store.lines(incident)), 0
            if new:
                fh.write(b"".join(line + b"\n" for _, line in new))
                fh.flush()
                seq, last = new[-1]  # the head of the lines written (the database's may already be further on)
                record = f"{seq} {json.loads(last)['hash']}".ljust(_HEAD_WIDTH - 1).encode() + b"\n"
                _write(folder / HEAD_DOC, record)  # under the lock: a reader sees lines and head agree
            elif diverged:
                (folder / HEAD_DOC).unlink(missing_ok=True)  # the database holds no lines: no head
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return local + len(new)
