"""Schema migrations of the PostgreSQL store: a database at version 1 (as the first release left
it, with a record in it) is migrated to the current version on the owner's first use and by
`stanch store migrate`, its rows untouched; the least-privilege role on an old schema is told to
ask the owner (it cannot migrate); a schema newer than the code is refused, never written to."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from typer.testing import CliRunner

from flows.entrypoints.cli import app
from flows.store.postgres import MIGRATIONS, SCHEMA_VERSION, PostgresStore
from integrations.errors import ConfigurationError

runner = CliRunner()


def _reset_to_v1(url: str) -> None:
    """The database as stanch's first release left it: the v1 tables, version 1, one record."""
    with psycopg.connect(url, autocommit=True) as owner:
        owner.execute("DROP TABLE IF EXISTS stanch_schema, stanch_events, stanch_documents, stanch_dedup")
        for ddl in MIGRATIONS[1]:
            owner.execute(ddl)
        owner.execute("INSERT INTO stanch_schema (version) VALUES (1)")
        owner.execute("INSERT INTO stanch_events (incident, seq, prev, hash, kind, line) VALUES "
                      "('INC-OLD', 1, %s, %s, 'run.started', %s)", ("0" * 64, "a" * 64, b'{"kind":"run.started"}'))


def _indexes(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename LIKE 'stanch_%'")}


def _versions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM stanch_schema ORDER BY version")]


def test_a_v1_database_is_migrated_on_first_use_and_keeps_its_rows(pg_url: str) -> None:
    assert SCHEMA_VERSION == 2
    _reset_to_v1(pg_url)
    store = PostgresStore(pg_url)
    assert [line for _, line in store.lines("INC-OLD")] == [b'{"kind":"run.started"}']  # first use migrates
    assert _versions(pg_url) == [1, 2]
    assert {"stanch_events_by_kind", "stanch_documents_by_name"} <= _indexes(pg_url)
    assert PostgresStore(pg_url).migrate() == (2, 2)  # nothing left to do
    store.close()


def test_the_app_role_on_an_old_schema_is_told_to_ask_the_owner_and_the_cli_migrates(pg_url: str) -> None:
    _reset_to_v1(pg_url)
    role, db = f"stanch_app_{uuid.uuid4().hex[:6]}", pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url, autocommit=True) as owner:
        owner.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        owner.execute(f"CREATE ROLE {role} LOGIN")
        owner.execute(f"GRANT CONNECT ON DATABASE {db} TO {role}")
        owner.execute(f"GRANT SELECT, INSERT ON stanch_events TO {role}")
        owner.execute(f"GRANT SELECT, INSERT, UPDATE ON stanch_documents, stanch_dedup TO {role}")
        owner.execute(f"GRANT SELECT ON stanch_schema TO {role}")
    app_url = pg_url.replace("postgres@", f"{role}@")
    try:
        with pytest.raises(ConfigurationError, match=r"schema version 1 and this stanch needs 2.*stanch store migrate"):
            PostgresStore(app_url).head("INC-OLD")
        refused = runner.invoke(app, ["store", "migrate"], env={"STANCH_STORE": app_url, "COLUMNS": "300"})
        assert refused.exit_code == 2 and "may not migrate it" in refused.output, refused.output
        assert _versions(pg_url) == [1]  # the failed attempt left nothing half-done
        done = runner.invoke(app, ["store", "migrate"], env={"STANCH_STORE": pg_url, "COLUMNS": "300"})
        assert done.exit_code == 0 and "migrated from version 1 to 2" in done.output, done.output
        assert PostgresStore(app_url).head("INC-OLD") == (1, "a" * 64)  # the role works on the migrated schema
        again = runner.invoke(app, ["store", "migrate"], env={"STANCH_STORE": pg_url, "COLUMNS": "300"})
        assert again.exit_code == 0 and "already at version 2" in again.output
    finally:
        with psycopg.connect(pg_url, autocommit=True) as owner:
            owner.execute(f"DROP OWNED BY {role}")
            owner.execute(f"DROP ROLE {role}")


def test_a_schema_newer_than_the_code_is_refused(pg_url: str) -> None:
    PostgresStore(pg_url).incidents()
    with psycopg.connect(pg_url, autocommit=True) as owner:
        owner.execute("INSERT INTO stanch_schema (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    try:
        with pytest.raises(ConfigurationError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this stanch"):
            PostgresStore(pg_url).append("INC-NEW", lambda seq, prev: ({"hash": "h", "kind": "k"}, b"{}"), "0" * 64)
        fresh = f"{pg_url}?application_name=stanch-cli"  # not this process's cached, already-checked store
        listed = runner.invoke(app, ["incidents"], env={"STANCH_STORE": fresh, "COLUMNS": "300"})
        assert listed.exit_code == 2 and "upgrade stanch here" in listed.output, listed.output
        with psycopg.connect(pg_url) as conn:
            assert conn.execute("SELECT count(*) FROM stanch_events WHERE incident = 'INC-NEW'").fetchone() == (0,)
    finally:
        with psycopg.connect(pg_url, autocommit=True) as owner:
            owner.execute("DELETE FROM stanch_schema WHERE version > %s", (SCHEMA_VERSION,))
