"""With the PostgreSQL store the database is the record (docs/operations.md): an incident id the
database does not hold is refused, naming the database — never served from a local working copy
left in $STANCH_HOME/incidents — and nothing is written to the database for it; an explicit folder
path is still opened as that folder; a working copy longer than the database (events deleted
there) is made equal to the database when the incident is opened."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from flows.engine.incident import Incident, IncidentNotFound
from flows.entrypoints.cli import app
from flows.store import current

ORPHAN = "INC-20990101-000000-AAAA"


def _folder_incident(store_dir: Path, incident: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An incident written with the folder store (a working copy the database never held)."""
    with monkeypatch.context() as mp:
        mp.delenv("STANCH_STORE", raising=False)
        inc = Incident(store_dir, incident)
        inc.write_meta({"id": incident, "runbook": "r", "runbook_path": "/nonexistent.yaml"})
        inc.write_plan({"name": "r", "steps": []})
        inc.timeline.append("run.started", data={"runbook": "r"})
        inc.timeline.append("run.finished", data={"outcome": "succeeded"})
        inc.timeline.close()
    return inc.folder


@pytest.fixture
def home(tmp_path: Path, pg_store: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STANCH_HOME", str(tmp_path))
    return tmp_path


def _cli(args: list[str], home: Path, pg_store: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, args, env={"STANCH_HOME": str(home), "STANCH_STORE": pg_store})
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output


@pytest.mark.parametrize("command", [["timeline", "verify"], ["timeline", "show"], ["postmortem"], ["resume"],
                                     ["rollback"]])
def test_an_id_the_database_does_not_hold_is_refused_not_read_from_the_working_copy(
        command: list[str], home: Path, pg_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _folder_incident(home / "incidents", ORPHAN, monkeypatch)
    code, out = _cli([*command, ORPHAN], home, pg_store)
    display = current().display  # type: ignore[union-attr]
    assert code == 2, out
    (line,) = [ln for ln in out.splitlines() if ln.strip()]
    assert line == f"error: no incident {ORPHAN!r} in {display}", line
    assert str(home) not in out
    store = current()
    assert store is not None and not store.exists(ORPHAN)
    assert store.documents(ORPHAN) == {}, "an orphan document was written to the database"


def test_an_explicit_folder_path_is_opened_as_that_folder_and_nothing_goes_to_the_database(
        home: Path, pg_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    incident = "INC-20990101-000000-BBBB"
    folder = _folder_incident(home / "elsewhere", incident, monkeypatch)
    code, out = _cli(["timeline", "verify", "--chain-only", str(folder)], home, pg_store)
    assert code == 0, out
    code, out = _cli(["postmortem", str(folder)], home, pg_store)
    assert code == 0, out
    assert (folder / "postmortem.md").is_file()
    store = current()
    assert store is not None and store.documents(incident) == {} and not store.exists(incident)


def test_not_found_under_the_database_names_it(home: Path, pg_store: str) -> None:
    with pytest.raises(IncidentNotFound) as caught:
        Incident.open_existing(home / "incidents", "INC-20990101-000000-ZZZZ")
    store = current()
    assert store is not None
    assert str(caught.value) == f"no incident 'INC-20990101-000000-ZZZZ' in {store.display}"
    assert caught.value.public == "no incident 'INC-20990101-000000-ZZZZ' in the incident store"


def test_a_working_copy_longer_than_the_database_is_cut_back_to_it(home: Path, pg_store: str) -> None:
    incident = "INC-20990101-000000-CCCC"
    inc = Incident(home / "incidents", incident)
    for i in range(6):
        inc.timeline.append("step.note", step="s", data={"i": i})
    inc.timeline.close()
    with psycopg.connect(pg_store, autocommit=True) as conn:  # the owner deletes the last events
        conn.execute("DELETE FROM stanch_events WHERE incident = %s AND seq > 3", (incident,))
    local = home / "incidents" / incident / "timeline.jsonl"
    assert local.read_bytes().count(b"\n") == 6
    store = current()
    assert store is not None
    held = b"".join(line + b"\n" for _, line in store.lines(incident))

    reopened = Incident.open_existing(home / "incidents", incident)
    assert local.read_bytes() == held
    assert [e["seq"] for e in reopened.events()] == [1, 2, 3]
    head = (home / "incidents" / incident / "timeline.head").read_text().split()
    assert head[0] == "3"
    code, out = _cli(["timeline", "show", incident], home, pg_store)
    assert code == 0 and "'i': 5" not in out and '"i": 5' not in out, out

    # every event deleted: the copy is emptied (and has no head), not served
    with psycopg.connect(pg_store, autocommit=True) as conn:
        conn.execute("DELETE FROM stanch_events WHERE incident = %s", (incident,))
    reopened.timeline.sync()
    assert local.read_bytes() == b""
    assert not (home / "incidents" / incident / "timeline.head").exists()
