"""A PostgreSQL store that cannot be reached or refuses the connection (wrong port, missing
database, unknown role, unresolvable host) is a configuration problem: every command that opens
the store says so in one line naming the URL without its password, exit 2 — never psycopg's
traceback, and never exit 1 (which ``timeline verify`` uses for "the record is broken")."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.entrypoints.cli import app
from flows.store.postgres import PostgresStore, StoreUnavailable
from integrations.errors import ConfigurationError

PASSWORD = "s3kr1t-pw"
BAD = {
    "bad-port": f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/stanch",
    "missing-database": f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/stanch_test_none_{uuid.uuid4().hex[:8]}",
    "unknown-role": f"postgresql://nobody_{uuid.uuid4().hex[:6]}:{PASSWORD}@127.0.0.1:5432/postgres",
    "unresolvable-host": f"postgresql://postgres:{PASSWORD}@no-such-host.invalid:5432/stanch",
    "password-parameter": f"postgres://postgres@127.0.0.1:1/stanch?password={PASSWORD}&sslmode=disable",
}
COMMANDS = [["incidents"], ["timeline", "verify", "INC-20990101-000000-ZZZZ"],
            ["timeline", "show", "INC-20990101-000000-ZZZZ"], ["postmortem", "INC-20990101-000000-ZZZZ"],
            ["store", "migrate"], ["drill", "history"]]


@pytest.mark.parametrize("url", list(BAD.values()), ids=list(BAD))
def test_the_connection_failure_is_a_configuration_error_without_the_password(url: str) -> None:
    store = PostgresStore(url)
    with pytest.raises(StoreUnavailable) as caught:
        store.exists("INC-1")
    assert isinstance(caught.value, ConfigurationError)
    message = str(caught.value)
    assert message.startswith(f"cannot connect to the store {store.display}: ")
    assert PASSWORD not in message and "\n" not in message


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c[:2]) for c in COMMANDS])
@pytest.mark.parametrize("case", ["bad-port", "missing-database", "unresolvable-host", "password-parameter"])
def test_every_command_says_one_line_and_exits_2(case: str, command: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, command, env={"STANCH_HOME": str(tmp_path), "STANCH_STORE": BAD[case]})
    out = result.output
    assert result.exit_code == 2, out
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in out and PASSWORD not in out
    (line,) = [ln for ln in out.splitlines() if ln.strip()]
    assert line.startswith("error: cannot connect to the store postgres"), line
