"""The timeline in PostgreSQL: two writers (threads, and separate processes) never fork the chain;
the exported folder verifies with no database; a whole-record rewrite in the database with every
hash recomputed fails verification once checkpoints are signed."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flows.engine.checkpoints import Signer, key_id, verify_record
from flows.engine.incident import Incident
from flows.engine.timeline import event_hash, verify
from flows.store import current, materialize


def _append_many(store_dir: str, incident: str, who: str, n: int) -> None:
    inc = Incident(Path(store_dir), incident)
    for i in range(n):
        inc.timeline.append("step.note", step=who, data={"i": i})


def test_threads_and_processes_append_to_one_linear_chain(pg_store: str, tmp_path: Path) -> None:
    # two processes, each with its own working copy (two machines), plus two threads here
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(tmp_path / f"m{i}"), "INC-RACE", f"p{i}", 25))
             for i in range(2)]
    for p in procs:
        p.start()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda w: _append_many(str(tmp_path / "m0"), "INC-RACE", w, 25), ["t0", "t1"]))
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = current()
    assert store is not None
    lines = [json.loads(line) for _, line in store.lines("INC-RACE")]
    assert [e["seq"] for e in lines] == list(range(1, 101))
    assert all(e["prev"] == p["hash"] for p, e in itertools.pairwise(lines))
    # every working copy, brought up to the database, is the same record and verifies
    for copy in ("m0", "m1", "export"):
        folder = tmp_path / copy / "INC-RACE"
        materialize(store, "INC-RACE", folder)
        result = verify(folder / "timeline.jsonl")
        assert result.ok and result.events == 100, result
    copies = {(tmp_path / c / "INC-RACE/timeline.jsonl").read_bytes() for c in ("m0", "m1", "export")}
    assert len(copies) == 1


def test_documents_and_events_survive_without_the_writer(pg_store: str, tmp_path: Path) -> None:
    inc = Incident(tmp_path / "writer", "INC-DOCS")
    inc.write_meta({"id": "INC-DOCS", "runbook": "r", "drill": True})
    inc.write_plan({"name": "r", "steps": []})
    inc.timeline.append("run.started", data={"runbook": "r"})
    inc.write_report("scope", "# scope\n\nfound 1 service\n")
    assert verify(inc.folder / "timeline.jsonl").ok  # the writer's own working copy, head included
    # another machine: nothing local, everything from the database
    other = Incident.open_existing(tmp_path / "reader", "INC-DOCS")
    assert other.read_meta()["runbook"] == "r" and [e["kind"] for e in other.events()] == ["run.started"]
    assert (other.reports_dir / "scope.md").read_text() == "# scope\n\nfound 1 service\n"
    assert (other.folder / "timeline.head").read_bytes() == (inc.folder / "timeline.head").read_bytes()


def test_rewrite_in_the_database_with_recomputed_hashes_fails_signed_verification(
        pg_store: str, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    inc = Incident(tmp_path / "w", "INC-TAMPER")
    inc.timeline.append("run.started", data={"runbook": "r"})
    inc.timeline.append("approval.approved", step="gate", actor="slack:U0LEAD1", data={"approver": "slack:U0LEAD1"})
    Signer(key, "INC-TAMPER", inc.timeline).checkpoint("end", lambda kind, data: inc.timeline.append(kind, data=data))
    keys = {key_id(key.public_key()): key.public_key()}
    out = tmp_path / "export" / "INC-TAMPER"
    materialize(current(), "INC-TAMPER", out)  # type: ignore[arg-type]
    assert verify_record(out / "timeline.jsonl", keys).ok

    # someone with the database rewrites the approver and recomputes every hash, head included
    with psycopg.connect(pg_store, autocommit=True) as conn:
        rows = conn.execute("SELECT seq, line FROM stanch_events WHERE incident = 'INC-TAMPER' ORDER BY seq").fetchall()
        prev = "0" * 64
        for seq, line in rows:
            event = json.loads(bytes(line))
            if event["kind"] == "approval.approved":
                event["actor"] = event["data"]["approver"] = "slack:U0MALLORY"
            event["prev"] = prev
            event["hash"] = event_hash(event)
            prev = event["hash"]
            body = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
            conn.execute("UPDATE stanch_events SET line = %s, hash = %s, prev = %s WHERE incident = 'INC-TAMPER' "
                         "AND seq = %s", (body, event["hash"], event["prev"], seq))
        conn.execute("UPDATE stanch_documents SET body = %s WHERE incident = 'INC-TAMPER' AND name = 'timeline.head'",
                     (f"{len(rows)} {prev}".ljust(95).encode() + b"\n",))
    rewritten = tmp_path / "export2" / "INC-TAMPER"
    materialize(current(), "INC-TAMPER", rewritten)  # type: ignore[arg-type]
    assert verify(rewritten / "timeline.jsonl").ok  # the bare chain is fooled …
    result = verify_record(rewritten / "timeline.jsonl", keys)
    assert not result.ok and "rewritten" in str(result), result  # … the signed checkpoints are not
    assert os.environ["STANCH_STORE"] == pg_store
