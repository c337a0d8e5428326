"""The incident record in PostgreSQL (``STANCH_STORE=postgresql://…``).

Owns: the schema (created and migrated on first use, ``stanch_schema.version``; see ``MIGRATIONS``),
appending
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

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import errors, sql

from integrations.errors import ConfigurationError

# Each version's statements take the schema from the one before to it; ``_migrate`` applies the
# missing ones in one transaction and records each version in ``stanch_schema``. Never edit a
# released step: add the next one.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("CREATE TABLE IF NOT EXISTS stanch_schema (version integer NOT NULL)",
        """CREATE TABLE IF NOT EXISTS stanch_events (
            incident text NOT NULL, seq bigint NOT NULL, prev text NOT NULL, hash text NOT NULL,
            kind text NOT NULL, line bytea NOT NULL, written_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (incident, seq))""",
        """CREATE TABLE IF NOT EXISTS stanch_documents (
            incident text NOT NULL, name text NOT NULL, body bytea NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (incident, name))""",
        """CREATE TABLE IF NOT EXISTS stanch_dedup (
            key text PRIMARY KEY, seen_at double precision NOT NULL)"""),
    # 2: listing incidents reads only their run/rollback events and two documents, not every row
    2: ("CREATE INDEX IF NOT EXISTS stanch_events_by_kind ON stanch_events (kind text_pattern_ops)",
        "CREATE INDEX IF NOT EXISTS stanch_documents_by_name ON stanch_documents (name)"),
}
SCHEMA_VERSION = max(MIGRATIONS)
HEAD_DOC = "timeline.head"
_HEAD_WIDTH = 96  # the folder's fixed-width head record, so an export is byte-identical

Make = Callable[[int, str], tuple[dict[str, Any], bytes]]


class StoreUnavailable(ConfigurationError):
    """The store's database cannot be reached or refuses the connection (wrong host, port,
    database, role or password): a configuration problem (exit 2), named by the URL without its
    password and psycopg's first line of explanation — never a traceback."""


class ChainConflict(RuntimeError):
    """Too many concurrent appends in a row (should not happen: each retry sees a newer head)."""


@dataclass
class Listed:
    """What a listing needs of one incident: the events of the kinds asked for (raw lines, in
    order), the documents asked for, and when its timeline last moved (epoch seconds)."""

    events: list[bytes] = field(default_factory=list)
    documents: dict[str, bytes] = field(default_factory=dict)
    active_at: float = 0.0
    has_timeline: bool = False


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
        """The URL without a password (``user:password@`` or a ``password=`` parameter), for messages."""
        url = re.sub(r"([?&]password=)[^&]*", r"\1***", self.url)
        head, sep, tail = url.rpartition("@")
        if not sep:
            return url
        scheme, _, user = head.partition("://")
        return f"{scheme}://{user.split(':', 1)[0]}@{tail}"

    def _connect(self) -> psycopg.Connection[Any]:
        """A new autocommit connection; ``StoreUnavailable`` when the database cannot be reached or
        refuses it (so every command says so in one line, exit 2, whatever it was doing)."""
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:  # OperationalError (refused, unknown host/database/role), bad URL
            lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
            why = lines[0] if lines else type(exc).__name__
            password = urlsplit(self.url).password if "://" in self.url else None
            if password:
                why = why.replace(password, "***")
            raise StoreUnavailable(f"cannot connect to the store {self.display}: {why}") from None

    def _conn(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._connect()
            self._local.conn = conn
        if not self._ready:
            with self._lock:
                if not self._ready:
                    self._migrate(conn)
                    self._ready = True
        return conn

    @staticmethod
    def _version(conn: psycopg.Connection[Any]) -> int:
        """The database's schema version: 0 when it has no stanch tables yet."""
        row = conn.execute("SELECT to_regclass('stanch_schema') IS NOT NULL").fetchone()
        if not (row and row[0]):
            return 0
        found = conn.execute("SELECT max(version) FROM stanch_schema").fetchone()
        return int(found[0]) if found and found[0] is not None else 0

    def _too_new(self, version: int) -> ConfigurationError:
        return ConfigurationError(f"the store {self.display} has schema version {version}, newer than this stanch "
                                  f"knows ({SCHEMA_VERSION}): a newer stanch migrated it — upgrade stanch here")

    def _migrate(self, conn: psycopg.Connection[Any]) -> int:
        """Bring the schema to ``SCHEMA_VERSION``; the version it was at. Nothing to do (the common
        case) costs two reads, so a least-privilege role (no CREATE, docs/operations.md) works on a
        database the owner migrated; one that would need to migrate it is told to ask the owner. A
        database newer than this code is refused (its rows may mean something this code does not know)."""
        found = self._version(conn)
        if found > SCHEMA_VERSION:
            raise self._too_new(found)
        if found == SCHEMA_VERSION:
            return found
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(7465787261)")  # one migrator at a time
                found = self._version(conn)
                if found > SCHEMA_VERSION:
                    raise self._too_new(found)
                for version in range(found + 1, SCHEMA_VERSION + 1):
                    for ddl in MIGRATIONS[version]:
                        conn.execute(ddl)
                    conn.execute("INSERT INTO stanch_schema (version) VALUES (%s)", (version,))
        except errors.InsufficientPrivilege:
            raise ConfigurationError(
                f"the store {self.display} has schema version {found} and this stanch needs {SCHEMA_VERSION}, "
                "but this role may not migrate it: run `stanch store migrate` once with the database owner's "
                "URL in STANCH_STORE (docs/operations.md, Schema migrations)") from None
        return found

    def migrate(self) -> tuple[int, int]:
        """Migrate now (``stanch store migrate``): (version before, version after)."""
        conn = self._connect()
        try:
            before = self._migrate(conn)
            self._ready = True
            return before, self._version(conn)
        finally:
            conn.close()

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

    def snapshot(self, incident: str) -> tuple[list[tuple[int, bytes]], dict[str, bytes]]:
        """The incident's lines and documents as of one instant (one REPEATABLE READ transaction):
        an append writes its line and the head document together, so the two always agree here
        unless someone changed one without the other — which is what verification must see."""
        conn = self._conn()
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            lines = [(int(seq), bytes(line)) for seq, line in conn.execute(
                "SELECT seq, line FROM stanch_events WHERE incident = %s ORDER BY seq", (incident,))]
            docs = {str(n): bytes(b) for n, b in conn.execute(
                "SELECT name, body FROM stanch_documents WHERE incident = %s ORDER BY name", (incident,))}
        return lines, docs

    def listing(self, prefixes: tuple[str, ...], documents: tuple[str, ...]) -> dict[str, Listed]:
        """Every incident with the events whose kind starts with one of ``prefixes`` (e.g.
        ``run.``), the named ``documents`` and its last activity (the head document is rewritten
        by every append) — what `stanch incidents` and Slack's list need, never whole records."""
        conn = self._conn()
        out: dict[str, Listed] = {}
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            if prefixes:  # one index range per prefix (stanch_events_by_kind, text_pattern_ops)
                like = sql.SQL(" OR ").join(sql.SQL("kind LIKE {}").format(
                    sql.Literal(p.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"))
                    for p in prefixes)
                query = sql.SQL("SELECT incident, line, extract(epoch FROM written_at) FROM stanch_events "
                                "WHERE {} ORDER BY incident, seq").format(like)
                for incident, line, at in conn.execute(query):
                    item = out.setdefault(str(incident), Listed())
                    item.events.append(bytes(line))
                    item.active_at = max(item.active_at, float(at))
                    item.has_timeline = True
            names = [HEAD_DOC, *documents]
            for incident, name, body, at in conn.execute(
                    "SELECT incident, name, body, extract(epoch FROM updated_at) FROM stanch_documents "
                    "WHERE name = ANY(%s)", (names,)):
                item = out.setdefault(str(incident), Listed())
                if name == HEAD_DOC:
                    item.active_at = max(item.active_at, float(at))
                    item.has_timeline = True
                if name in documents:
                    item.documents[str(name)] = bytes(body)
        return {k: v for k, v in sorted(out.items()) if v.has_timeline}  # documents alone are no incident

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
