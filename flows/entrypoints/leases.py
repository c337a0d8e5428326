"""Run leases in PostgreSQL: which worker executes which flow run, and for how long it is trusted.

A worker holds one row per flow run it executes (``stanch_run_leases``) and renews it every few
seconds (``renew``). A worker that dies (SIGKILL, machine lost, network cut) stops renewing; once
``expires_at`` passes, any other worker's ``take_expired`` wins the row atomically (``FOR UPDATE
SKIP LOCKED``: exactly one taker) and takes the incident over (``flows.entrypoints.worker``). A
worker that finds one of its own rows taken (it stalled longer than the TTL) must stop executing
it: fencing.

Detection bound: a dead worker's runs are taken over at most ``ttl + scan interval`` after its
last renewal (defaults 10 s + 2 s; docs/operations.md).

Owns: the lease table (created on first use when it is missing: a role without CREATE on the
schema — ``stanch_worker`` in docs/operations.md — uses the table the owner created), acquire/
renew/release/take-over queries.
Must not touch: Prefect (the worker decides what a take-over means), the incident store.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from integrations.errors import ConfigurationError

TABLE = "stanch_run_leases"
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    flow_run_id uuid PRIMARY KEY,
    incident_id text NOT NULL,
    worker text NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    takeovers integer NOT NULL DEFAULT 0
)
"""


@dataclass(frozen=True)
class Expired:
    """A lease won from a worker that stopped renewing it."""

    flow_run_id: UUID
    incident_id: str
    previous_worker: str
    expired_at: datetime
    takeovers: int


class LeaseStore:
    """Leases in one PostgreSQL database (``postgresql://…``); one autocommit connection, reopened
    after an error. Thread-safe (a lock around the connection)."""

    def __init__(self, url: str, *, ttl: float = 10.0) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be > 0")
        self.url = url
        self.ttl = ttl
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None

    def _execute(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
                    self._create_table(self._conn)
                cur = self._conn.execute(sql, params)
                return cur.fetchall() if cur.description is not None else []
            except psycopg.Error:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                raise

    def _create_table(self, conn: psycopg.Connection[Any]) -> None:
        """Create the table unless it exists. Checked first: PostgreSQL checks CREATE on the schema
        even for ``CREATE TABLE IF NOT EXISTS`` of an existing table, which the worker role lacks."""
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()
        if row and row[0]:
            return
        try:
            conn.execute(SCHEMA)
        except psycopg.errors.InsufficientPrivilege:
            conn.close()
            raise ConfigurationError(
                f"the run lease table {TABLE} does not exist and this role may not create it: start one "
                "worker once with the database owner's URL (or grant CREATE on the schema), then grant the "
                "worker role its rights (docs/operations.md, PostgreSQL roles)") from None

    def ensure_schema(self) -> None:
        self._execute("SELECT 1")

    def acquire(self, flow_run_id: UUID, incident_id: str, worker: str) -> bool:
        """Take the lease of a run about to be claimed: True if it is now ours (free, expired, or
        already ours)."""
        rows = self._execute(
            f"INSERT INTO {TABLE} (flow_run_id, incident_id, worker, expires_at) "
            "VALUES (%s, %s, %s, now() + make_interval(secs => %s)) "
            f"ON CONFLICT (flow_run_id) DO UPDATE SET worker = excluded.worker, expires_at = excluded.expires_at, "
            "acquired_at = now() "
            f"WHERE {TABLE}.worker = excluded.worker OR {TABLE}.expires_at < now() RETURNING flow_run_id",
            (flow_run_id, incident_id, worker, self.ttl))
        return bool(rows)

    def renew(self, worker: str, flow_run_ids: Iterable[UUID]) -> set[UUID]:
        """Extend this worker's leases; returns the ids it no longer holds (taken over: stop them)."""
        ids = list(flow_run_ids)
        if not ids:
            return set()
        rows = self._execute(
            f"UPDATE {TABLE} SET expires_at = now() + make_interval(secs => %s) "
            "WHERE worker = %s AND flow_run_id = ANY(%s) RETURNING flow_run_id", (self.ttl, worker, ids))
        return set(ids) - {UUID(str(r[0])) for r in rows}

    def release(self, flow_run_id: UUID, worker: str | None = None) -> None:
        """Drop a lease (the run finished or was suspended); with ``worker``, only if still its own."""
        if worker is None:
            self._execute(f"DELETE FROM {TABLE} WHERE flow_run_id = %s", (flow_run_id,))
        else:
            self._execute(f"DELETE FROM {TABLE} WHERE flow_run_id = %s AND worker = %s", (flow_run_id, worker))

    def expire(self, worker: str, flow_run_ids: Iterable[UUID]) -> None:
        """Give up this worker's leases at once (graceful stop): another worker takes them over
        on its next scan instead of after the TTL."""
        self._execute(f"UPDATE {TABLE} SET expires_at = now() - interval '1 second' "
                      "WHERE worker = %s AND flow_run_id = ANY(%s)", (worker, list(flow_run_ids)))

    def take_expired(self, worker: str, limit: int = 4) -> list[Expired]:
        """Atomically win up to ``limit`` expired leases for ``worker`` (one winner per lease)."""
        rows = self._execute(
            f"WITH e AS (SELECT flow_run_id, worker AS prev, expires_at FROM {TABLE} WHERE expires_at < now() "
            "ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED) "
            f"UPDATE {TABLE} l SET worker = %s, expires_at = now() + make_interval(secs => %s), "
            "takeovers = l.takeovers + 1 FROM e WHERE l.flow_run_id = e.flow_run_id "
            "RETURNING l.flow_run_id, l.incident_id, e.prev, e.expires_at, l.takeovers",
            (limit, worker, self.ttl))
        return [Expired(UUID(str(r[0])), r[1], r[2], r[3], r[4]) for r in rows]

    def holders(self) -> dict[UUID, str]:
        """flow run id -> worker, for every lease (tests, `stanch cluster status`)."""
        return {UUID(str(r[0])): r[1] for r in self._execute(f"SELECT flow_run_id, worker FROM {TABLE}")}

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            self._conn = None
