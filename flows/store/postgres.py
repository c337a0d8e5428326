"""The incident record in PostgreSQL (``STANCH_STORE=postgresql://…``).

Owns: the schema (created and migrated on first use, ``stanch_schema.version``), appending
timeline events to a chain that two writers can never fork, named documents (``plan.json``,
``incident.json``, ``reports/<step>.md``, ``postmortem.md``, ``timeline.head``,
``timeline.checkpoint``, ``scorecard.*``), listing incidents, and claiming de-duplication keys
(Slack deliveries) for every replica at once.

The chain: ``stanch_events`` has the primary key (incident, seq). An append reads the head,
builds the event on it (the caller's ``make(seq, prev)`` computes the hash), and inserts it; a
concurrent writer that got there first makes the insert fail with a unique violation, and the
append retries on the new head — so the chain stays linear whoever writes (a worker and
``stanch approve`` on a laptop). The head document is written in the same transaction.

Must not touch: Prefect, boto3, Slack, the engine's modules (it stores bytes it is given).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg import errors

SCHEMA_VERSION = 1
_DDL = [
    "CREATE TABLE IF NOT EXISTS stanch_schema (version integer NOT NULL)",
    """CREATE TABLE IF NOT EXISTS stanch_events (
        incident text NOT NULL, seq bigint NOT NULL, prev text NOT NULL, hash text NOT NULL,
        kind text NOT NULL, line bytea NOT NULL, written_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (incident, seq))""",
    """CREATE TABLE IF NOT EXISTS stanch_documents (
        incident text NOT NULL, name text NOT NULL, body bytea NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (incident, name))""",
    """CREATE TABLE IF NOT EXISTS stanch_dedup (
        key text PRIMARY KEY, seen_at double precision NOT NULL)""",
]
HEAD_DOC = "timeline.head"
_HEAD_WIDTH = 96  # the folder's fixed-width head record, so an export is byte-identical

Make = Callable[[int, str], tuple[dict[str, Any], bytes]]


class ChainConflict(RuntimeError):
    """Too many concurrent appends in a row (should not happen: each retry sees a newer head)."""


class PostgresStore:
    """One database; a connection per thread (psycopg connections are not shared across threads)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        self._ready = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresStore({self.display})"

    @property
    def display(self) -> str:
        """The URL without a password, for messages."""
        head, sep, tail = self.url.partition("@")
        if not sep:
            return self.url
        scheme, _, user = head.partition("://")
        return f"{scheme}://{user.split(':', 1)[0]}@{tail}"

    def _conn(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            self._local.conn = conn
        if not self._ready:
            with self._lock:
                if not self._ready:
                    self._migrate(conn)
                    self._ready = True
        return conn

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        """Create the tables, unless they are there at the current version: a least-privilege role
        (no CREATE on the schema, docs/operations.md) then only reads the version."""
        row = conn.execute("SELECT to_regclass('stanch_schema') IS NOT NULL AND "
                           "to_regclass('stanch_dedup') IS NOT NULL").fetchone()
        if row and row[0]:
            found = conn.execute("SELECT max(version) FROM stanch_schema").fetchone()
            if found and found[0] is not None and int(found[0]) >= SCHEMA_VERSION:
                return
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(7465787261)")  # one migrator at a time
            for ddl in _DDL:
                conn.execute(ddl)
            row = conn.execute("SELECT max(version) FROM stanch_schema").fetchone()
            if row is None or row[0] is None:
                conn.execute("INSERT INTO stanch_schema (version) VALUES (%s)", (SCHEMA_VERSION,))

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -------------------------------------------------------------- chain

    def head(self, incident: str) -> tuple[int, str] | None:
        row = self._conn().execute("SELECT seq, hash FROM stanch_events WHERE incident = %s "
                                   "ORDER BY seq DESC LIMIT 1", (incident,)).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def append(self, incident: str, make: Make, genesis: str, attempts: int = 50) -> dict[str, Any]:
        """Insert ``make(seq, prev)`` at the head; on a concurrent insert, retry on the new head."""
        conn = self._conn()
        for attempt in range(attempts):
            head = self.head(incident)
            seq, prev = (head[0] + 1, head[1]) if head else (1, genesis)
            event, line = make(seq, prev)
            try:
                with conn.transaction():
                    conn.execute("INSERT INTO stanch_events (incident, seq, prev, hash, kind, line) "
                                 "VALUES (%s, %s, %s, %s, %s, %s)",
                                 (incident, seq, prev, event["hash"], event["kind"], line))
                    record = f"{seq} {event['hash']}".ljust(_HEAD_WIDTH - 1).encode() + b"\n"
                    self._put(conn, incident, HEAD_DOC, record)
                return event
            except errors.UniqueViolation:
                time.sleep(min(0.002 * (attempt + 1), 0.05))  # another writer appended: rebuild on its head
        raise ChainConflict(f"could not append to {incident}'s timeline after {attempts} attempts")

    def lines(self, incident: str, after: int = 0) -> Iterator[tuple[int, bytes]]:
        cur = self._conn().execute("SELECT seq, line FROM stanch_events WHERE incident = %s AND seq > %s "
                                   "ORDER BY seq", (incident, after))
        for seq, line in cur:
            yield int(seq), bytes(line)

    # -------------------------------------------------------------- documents

    @staticmethod
    def _put(conn: psycopg.Connection[Any], incident: str, name: str, body: bytes) -> None:
        conn.execute("INSERT INTO stanch_documents (incident, name, body) VALUES (%s, %s, %s) "
                     "ON CONFLICT (incident, name) DO UPDATE SET body = EXCLUDED.body, updated_at = now()",
                     (incident, name, body))

    def put(self, incident: str, name: str, body: bytes) -> None:
        self._put(self._conn(), incident, name, body)

    def get(self, incident: str, name: str) -> bytes | None:
        row = self._conn().execute("SELECT body FROM stanch_documents WHERE incident = %s AND name = %s",
                                   (incident, name)).fetchone()
        return bytes(row[0]) if row else None

    def documents(self, incident: str) -> dict[str, bytes]:
        cur = self._conn().execute("SELECT name, body FROM stanch_documents WHERE incident = %s ORDER BY name",
                                   (incident,))
        return {str(n): bytes(b) for n, b in cur}

    def named(self, name: str) -> dict[str, bytes]:
        """incident -> the document ``name`` of every incident that has one (e.g. each drill's
        ``scorecard.json``), in one query."""
        cur = self._conn().execute("SELECT incident, body FROM stanch_documents WHERE name = %s ORDER BY incident",
                                   (name,))
        return {str(i): bytes(b) for i, b in cur}

    def incidents(self) -> list[str]:
        cur = self._conn().execute("SELECT DISTINCT incident FROM stanch_events UNION "
                                   "SELECT DISTINCT incident FROM stanch_documents ORDER BY 1")
        return [str(r[0]) for r in cur]

    def exists(self, incident: str) -> bool:
        return self.head(incident) is not None

    # -------------------------------------------------------------- de-duplication

    def claim(self, key: str, ttl: float) -> bool:
        """True the first time ``key`` is claimed within ``ttl`` seconds, by any process."""
        now = time.time()
        row = self._conn().execute(
            "INSERT INTO stanch_dedup (key, seen_at) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE "
            "SET seen_at = EXCLUDED.seen_at WHERE stanch_dedup.seen_at < %s RETURNING key",
            (key, now, now - ttl)).fetchone()
        return row is not None

    def seen(self, key: str, ttl: float) -> bool:
        row = self._conn().execute("SELECT seen_at FROM stanch_dedup WHERE key = %s", (key,)).fetchone()
        return row is not None and time.time() - float(row[0]) < ttl
