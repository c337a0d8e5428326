"""The PostgreSQL store end to end (issue 11 §1): a real ``leaked-access-key`` run on machine A's
working copy pauses for its clean-up approval; a *separate process* with its own, empty working
copy ("machine B") finds the incident in the database and approves it; the run finishes. Then the
record is read back from PostgreSQL — `stanch incidents`, `stanch timeline verify` from the
database, `stanch export` verified with no database — and the world from moto: the leaked key is
deleted, the owner's other key rotated, nobody else touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sandboxes import seeded_sandbox
from typer.testing import CliRunner

from flows.engine.runtime import run_runbook
from flows.entrypoints.cli import app
from flows.store import current
from integrations.sandbox import Sandbox, observe

REPO = Path(__file__).resolve().parents[2]
RUNBOOK = REPO / "runbooks" / "leaked-access-key.yaml"
BILLING = "333333333333"
APPROVE = """
import sys
from pathlib import Path
from flows.engine.approvals import submit_decision, wait_outcome
store, incident = Path(sys.argv[1]), sys.argv[2]
nonce = submit_decision(store, incident, "approve-cleanup", "slack:U0LEAD1", True, "from machine B", wait=30)
outcome = wait_outcome(store, incident, nonce, timeout=60)
print(outcome["kind"] if outcome else "none")
"""


@pytest.fixture(scope="module")
def leaked(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Iterator[Sandbox]:
    with pytest.MonkeyPatch.context() as mp:
        yield from seeded_sandbox(tmp_path_factory.mktemp("pgstore"), mp, fleet_variant="leaked-key")


def _kinds_in_db(incident: str) -> list[str]:
    store = current()
    assert store is not None
    return [json.loads(line)["kind"] for _, line in store.lines(incident)]


def test_a_run_approved_from_another_machine_through_the_database(
        leaked: Sandbox, pg_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_API_URL

    fleet = leaked.fleet
    assert fleet is not None and fleet.leaked_access_key_id
    key = fleet.leaked_access_key_id
    (other,) = [k for k in fleet.users["svc-reporting"].access_key_ids if k != key]
    incident = "INC-PG-1"
    box: dict[str, Any] = {}
    machine_a = tmp_path / "machine-a"

    def run() -> None:
        box["state"] = run_runbook(str(RUNBOOK), {"access_key_id": key, "leaked_at": "a public gist"}, incident,
                                   str(machine_a), True, "slack:U0ONCALL", return_state=True)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    deadline = time.monotonic() + 60
    while "approval.requested" not in _kinds_in_db(incident):
        assert time.monotonic() < deadline and t.is_alive(), _kinds_in_db(incident)
        time.sleep(0.1)

    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_API_URL": str(PREFECT_API_URL.value()),
           "STANCH_STORE": pg_store}
    machine_b = tmp_path / "machine-b"
    done = subprocess.run([sys.executable, "-c", APPROVE, str(machine_b), incident], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "approval.approved", done.stderr[-2000:]
    t.join(90)
    assert box["state"].is_completed(), box["state"].message

    # the world: the leaked key deleted, the owner's other key rotated, svc-etl untouched
    now = observe.access_key_statuses(leaked.url, BILLING, "svc-reporting")
    assert key not in now and now[other] == "Inactive" and list(now.values()).count("Active") == 1
    assert set(observe.access_key_statuses(leaked.url, BILLING, "svc-etl").values()) == {"Active"}

    # the record: one linear chain in the database, with the decision machine B made
    kinds = _kinds_in_db(incident)
    assert kinds.count("approval.approved") == 1 and kinds[-1] in ("run.finished", "checkpoint.signed")
    with psycopg.connect(pg_store) as conn:
        seqs = [r[0] for r in conn.execute("SELECT seq FROM stanch_events WHERE incident = %s ORDER BY seq",
                                           (incident,))]
        docs = {r[0] for r in conn.execute("SELECT name FROM stanch_documents WHERE incident = %s", (incident,))}
    assert seqs == list(range(1, len(seqs) + 1))
    assert {"incident.json", "plan.json", "postmortem.md", "timeline.head", "reports/delete-key.md"} <= docs

    runner = CliRunner()
    listed = runner.invoke(app, ["incidents", "--json"])
    row = next(json.loads(ln) for ln in listed.output.splitlines() if json.loads(ln)["id"] == incident)
    assert (row["runbook"], row["outcome"], row["kind"]) == ("leaked-access-key", "succeeded", "drill")
    verified = runner.invoke(app, ["timeline", "verify", incident])
    assert verified.exit_code == 0 and "intact" in verified.output and "postgresql://" in verified.output

    out = tmp_path / "export"
    exported = runner.invoke(app, ["export", incident, str(out)])
    assert exported.exit_code == 0, exported.output
    assert (out / incident / "timeline.jsonl").read_bytes() == (machine_a / incident / "timeline.jsonl").read_bytes()
    monkeypatch.delenv("STANCH_STORE")  # no database from here on
    offline = runner.invoke(app, ["timeline", "verify", str(out / incident)])
    assert offline.exit_code == 0 and "intact" in offline.output, offline.output
    again = runner.invoke(app, ["export", incident, str(out)], env={"STANCH_STORE": pg_store})
    assert again.exit_code == 2 and "not empty" in again.output
