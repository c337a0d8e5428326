"""Hostile edits inside the PostgreSQL store (B4), by someone who holds the database as its owner
(the documented app role has no DELETE or UPDATE on events): a truncation leaves the stored head
saying more events than the rows; verify from the database and verify of `stanch export` must
both say so (exit 1), as the folder store does — neither may rebuild the head from the rows left.
Moving the stored head too is caught by the signed head; deleting both documents leaves no head."""

from __future__ import annotations

from pathlib import Path

import psycopg
from typer.testing import CliRunner

from flows.engine.checkpoints import Signer
from flows.engine.incident import Incident
from flows.entrypoints.cli import app
from integrations.settings import StanchSettings

runner = CliRunner()


def _both(incident: str, out: Path) -> list[tuple[int, str]]:
    """(exit code, output) of verify from the database, then of verify of a fresh export."""
    results = []
    direct = runner.invoke(app, ["timeline", "verify", incident], env={"COLUMNS": "300"})
    results.append((direct.exit_code, " ".join(direct.output.split())))
    exported = runner.invoke(app, ["export", incident, str(out)])
    assert exported.exit_code == 0, exported.output
    offline = runner.invoke(app, ["timeline", "verify", str(out / incident)], env={"COLUMNS": "300"})
    results.append((offline.exit_code, " ".join(offline.output.split())))
    return results


def test_a_truncation_inside_postgres_fails_verification(pg_store: str, tmp_path: Path) -> None:
    inc = Incident(tmp_path / "writer", "INC-B4")
    for i in range(15):
        inc.timeline.append("step.note", step="s", data={"i": i})
    Signer.from_settings(StanchSettings(), "INC-B4", inc.timeline).checkpoint(
        "end", lambda kind, data: inc.timeline.append(kind, data=data))  # the installation key: event 16
    assert [code for code, _ in _both("INC-B4", tmp_path / "x0")] == [0, 0]

    with psycopg.connect(pg_store, autocommit=True) as owner:
        owner.execute("DELETE FROM stanch_events WHERE incident = 'INC-B4' AND seq > 10")
    for code, out in _both("INC-B4", tmp_path / "x1"):
        assert code == 1 and "the last 6 event(s) were dropped (head says seq 16, file ends at 10)" in out, out

    with psycopg.connect(pg_store, autocommit=True) as owner:  # ... and the stored head moved to match
        last = owner.execute("SELECT hash FROM stanch_events WHERE incident = 'INC-B4' AND seq = 10").fetchone()
        assert last is not None
        owner.execute("UPDATE stanch_documents SET body = %s WHERE incident = 'INC-B4' AND name = 'timeline.head'",
                      (f"10 {last[0]}".ljust(95).encode() + b"\n",))
    for code, out in _both("INC-B4", tmp_path / "x2"):
        assert code == 1 and "the signed head (seq 16) is not in the record" in out, out

    with psycopg.connect(pg_store, autocommit=True) as owner:  # ... and both heads deleted
        owner.execute("DELETE FROM stanch_documents WHERE incident = 'INC-B4'")
    for code, out in _both("INC-B4", tmp_path / "x3"):
        assert code == 1 and "timeline.head is missing" in out, out
