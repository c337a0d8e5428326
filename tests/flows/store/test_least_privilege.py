"""The least-privilege role of docs/operations.md, applied as written: the store works through it
(append, documents, de-dup keys) once the owner created the tables, and it cannot rewrite history
(no UPDATE or DELETE on events)."""

from __future__ import annotations

import hashlib
import re
import uuid
from pathlib import Path

import psycopg
import pytest

from flows.store.postgres import PostgresStore

DOC = Path(__file__).parents[3] / "docs" / "operations.md"


def _grants() -> list[str]:
    section = DOC.read_text(encoding="utf-8").split("### The incident record in PostgreSQL", 1)[1]
    sql = section.split("```sql", 1)[1].split("```", 1)[0]
    return [s.split("--")[0].strip() for s in re.split(r";\s*(?:--[^\n]*)?\n", sql) if s.strip()]


def test_the_documented_role_can_append_but_not_rewrite(pg_url: str) -> None:
    PostgresStore(pg_url).incidents()  # the owner's first start creates the tables
    role, db = f"stanch_app_{uuid.uuid4().hex[:6]}", pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url, autocommit=True) as owner:
        owner.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        for stmt in _grants():
            owner.execute(stmt.replace("stanch_app", role).replace("DATABASE stanch ", f"DATABASE {db} ")
                          .replace("PASSWORD '…'", ""))
    try:
        app = PostgresStore(pg_url.replace("postgres@", f"{role}@"))
        event = app.append("INC-ROLE", lambda seq, prev: ({"hash": hashlib.sha256(b"e").hexdigest(), "kind": "k"},
                                                         b'{"seq":1}'), "0" * 64)
        app.put("INC-ROLE", "incident.json", b"{}")
        assert event["kind"] == "k" and app.get("INC-ROLE", "incident.json") == b"{}" and app.claim("d", 60)
        for forbidden in ("UPDATE stanch_events SET kind = 'x'", "DELETE FROM stanch_events"):
            with psycopg.connect(app.url, autocommit=True) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(forbidden)
        app.close()
    finally:
        with psycopg.connect(pg_url, autocommit=True) as owner:
            owner.execute(f"DROP OWNED BY {role}")
            owner.execute(f"DROP ROLE {role}")
