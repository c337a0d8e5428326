"""``stanch incidents [--drill|--live]``: every incident of the store with its real outcome, read
from the timeline (not from what the launcher hoped), drills told apart from live incidents; a
rollback's outcome as it printed it; with the PostgreSQL store, read from the database without
downloading whole records (only run/rollback events and two documents)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from flows.engine.incident import Incident
from flows.engine.incident_list import list_incidents
from flows.entrypoints.cli import app

runner = CliRunner()


def _incident(store: Path, iid: str, runbook: str, *, drill: bool, day: int, finish: list[tuple[str, str]],
              scorecard: dict | None = None) -> None:
    inc = Incident(store, iid)
    inc.write_meta({"id": iid, "runbook": runbook, "drill": drill})
    ts = datetime(2026, 11, day, 3, 0, tzinfo=UTC)
    inc.timeline.append("run.started", data={"runbook": runbook, "severity": "sev1", "drill": drill}, ts=ts)
    for kind, outcome in finish:
        inc.timeline.append(kind, data={"outcome": outcome}, ts=ts)
    inc.timeline.close()
    if scorecard is not None:
        (inc.folder / "scorecard.json").write_text(json.dumps(scorecard), encoding="utf-8")


def _store(tmp_path: Path) -> Path:
    store = tmp_path / "incidents"
    _incident(store, "INC-A", "compromised-dependency", drill=False, day=1,
              finish=[("run.finished", "failed"), ("rollback.started", ""), ("rollback.finished", "rolled back")])
    _incident(store, "INC-B", "compromised-dependency", drill=True, day=2, finish=[("run.finished", "succeeded")],
              scorecard={"scenario": "clean", "score": 100})
    _incident(store, "INC-C", "leaked-access-key", drill=False, day=3, finish=[])  # crashed or still running
    rolled = Incident(store, "INC-E")  # a rollback recorded before its outcome was: derived, not "rolled back"
    rolled.write_meta({"id": "INC-E", "runbook": "leaked-access-key", "drill": False})
    ts = datetime(2026, 10, 30, 3, 0, tzinfo=UTC)
    rolled.timeline.append("run.started", data={"runbook": "leaked-access-key"}, ts=ts)
    rolled.timeline.append("run.finished", data={"outcome": "succeeded"}, ts=ts)
    rolled.timeline.append("rollback.finished", data={"failed": 0, "undone": [], "not_undone": []}, ts=ts)
    rolled.timeline.close()
    (store / "not-an-incident").mkdir()
    broken = store / "INC-D"
    broken.mkdir()
    (broken / "timeline.jsonl").write_text("{not json\n", encoding="utf-8")
    return store


def test_outcomes_come_from_the_timeline_newest_first(tmp_path: Path) -> None:
    rows = list_incidents(_store(tmp_path))
    by_id = {r.id: r for r in rows}
    assert [r.id for r in rows[:3]] == ["INC-C", "INC-B", "INC-A"]
    assert by_id["INC-A"].outcome == "rolled back" and by_id["INC-A"].kind == "live"
    assert (by_id["INC-B"].kind, by_id["INC-B"].scenario, by_id["INC-B"].score) == ("drill", "clean", 100)
    assert by_id["INC-C"].outcome == "unfinished"
    assert by_id["INC-D"].outcome.startswith("unreadable")  # listed, not hidden
    assert "not-an-incident" not in by_id
    assert by_id["INC-E"].outcome == "nothing to undo"


def test_postgres_listing_reads_only_what_it_shows(pg_store: str, tmp_path: Path) -> None:
    import psycopg

    from flows.store import mirror

    store = _store(tmp_path / "writer")  # written through the PostgreSQL store (INC-D's garbage stays local)
    mirror(store / "INC-B", store / "INC-B" / "scorecard.json")  # as `stanch drill` stores its scorecard
    with psycopg.connect(pg_store, autocommit=True) as owner:  # a row the listing must never parse
        owner.execute("INSERT INTO stanch_events (incident, seq, prev, hash, kind, line) VALUES "
                      "('INC-C', 2, 'x', 'y', 'item.noise', '\\x7b6e6f74206a736f6e'::bytea)")
    reader = tmp_path / "reader"  # another machine: no working copy at all
    listed = runner.invoke(app, ["incidents", "--json"], env={"STANCH_HOME": str(reader), "COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    rows = {json.loads(ln)["id"]: json.loads(ln) for ln in listed.output.splitlines()}
    assert list(rows) == ["INC-C", "INC-B", "INC-A", "INC-E"]  # newest first; no INC-D: it never reached the store
    assert (rows["INC-A"]["outcome"], rows["INC-B"]["score"], rows["INC-C"]["outcome"],
            rows["INC-E"]["outcome"]) == ("rolled back", 100, "unfinished", "nothing to undo")
    assert not (reader / "incidents").exists()  # nothing downloaded into a working copy


def test_cli_filters_drill_and_live(tmp_path: Path) -> None:
    env = {"STANCH_STORE": str(_store(tmp_path)), "COLUMNS": "100"}
    drills = runner.invoke(app, ["incidents", "--drill", "--json"], env=env)
    assert drills.exit_code == 0, drills.output
    assert [json.loads(ln)["id"] for ln in drills.output.splitlines()] == ["INC-B"]
    live = runner.invoke(app, ["incidents", "--live"], env=env)
    assert live.exit_code == 0
    assert "INC-A" in live.output and "rolled back" in live.output and "INC-B" not in live.output
    every = runner.invoke(app, ["incidents", "--json"], env=env)
    scored = [json.loads(ln) for ln in every.output.splitlines() if json.loads(ln)["id"] == "INC-B"]
    assert (scored[0]["scenario"], scored[0]["score"]) == ("clean", 100)
    table = runner.invoke(app, ["incidents"], env=env)
    assert "INC-B" in table.output and "unfinished" in table.output and "rolled back" in table.output


def test_drill_and_live_together_is_bad_input(tmp_path: Path) -> None:
    result = runner.invoke(app, ["incidents", "--drill", "--live"], env={"STANCH_STORE": str(tmp_path)})
    assert result.exit_code == 2 and "exclude each other" in result.output


def test_empty_store_says_so(tmp_path: Path) -> None:
    result = runner.invoke(app, ["incidents"], env={"STANCH_STORE": str(tmp_path / "none")})
    assert result.exit_code == 0 and "no incidents in" in result.output
