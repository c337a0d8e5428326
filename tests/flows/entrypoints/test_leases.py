"""Run leases against a real PostgreSQL (a database of its own, dropped after): one holder per
run, renewals, expiry, exactly one winner when several workers race for an expired lease, and the
least-privilege worker role of docs/operations.md (its grants applied as written) using them."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from flows.entrypoints.cluster import database_url, drop_database, ensure_database, postgres_reachable
from flows.entrypoints.leases import LeaseStore
from integrations.errors import ConfigurationError

POSTGRES = os.environ.get("STANCH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
_unreachable = postgres_reachable(POSTGRES)
pytestmark = pytest.mark.skipif(_unreachable is not None,
                                reason=f"PostgreSQL at {POSTGRES} is not reachable ({_unreachable})")


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    database = f"stanch_test_leases_{uuid.uuid4().hex[:10]}"
    assert ensure_database(POSTGRES, database) is True
    assert ensure_database(POSTGRES, database) is False  # idempotent
    try:
        yield database_url(POSTGRES, database)
    finally:
        drop_database(POSTGRES, database)


def test_one_holder_renewals_and_release(url: str) -> None:
    a, b = LeaseStore(url, ttl=30), LeaseStore(url, ttl=30)
    run = uuid.uuid4()
    assert a.acquire(run, "INC-1", "w1") and a.acquire(run, "INC-1", "w1")  # again: still ours
    assert not b.acquire(run, "INC-1", "w2")  # held and not expired
    assert a.renew("w1", [run]) == set() and b.renew("w2", [run]) == {run}  # w2 never held it
    assert b.take_expired("w2") == []
    assert a.holders()[run] == "w1"
    a.release(run, "w2")  # not its own: nothing happens
    assert run in a.holders()
    a.release(run, "w1")
    assert run not in a.holders() and b.acquire(run, "INC-1", "w2")
    a.close()
    b.close()


def test_expired_lease_has_exactly_one_taker_and_the_old_holder_learns_it(url: str) -> None:
    short = LeaseStore(url, ttl=0.2)
    runs = [uuid.uuid4() for _ in range(3)]
    for r in runs:
        assert short.acquire(r, f"INC-{r.hex[:4]}", "dead")
    time.sleep(0.4)
    takers = [LeaseStore(url, ttl=30) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        won = list(pool.map(lambda i: takers[i].take_expired(f"t{i}", limit=10), range(4)))
    taken = [e.flow_run_id for w in won for e in w]
    assert sorted(taken) == sorted(runs)  # each expired lease won once, no lease twice
    assert all(e.previous_worker == "dead" and e.takeovers == 1 for w in won for e in w)
    assert short.renew("dead", runs) == set(runs)  # the stalled worker finds them gone: it must stop
    held = takers[0].holders()
    assert {held[r] for r in runs} <= {"t0", "t1", "t2", "t3"}
    takers[0].expire(held[runs[0]], [runs[0]])  # a graceful stop hands over at once
    assert [e.flow_run_id for e in takers[1].take_expired("t9")] == [runs[0]]
    for s in (short, *takers):
        s.close()


def test_worker_fences_only_runs_it_still_executes(url: str) -> None:
    """A run that finished (no longer active, lease released) is not 'lost'; one still executing
    whose lease is gone is, and the worker's ``on_lease_lost`` hears of it."""
    import threading

    from flows.entrypoints.worker import Worker

    lost: list[set[uuid.UUID]] = []
    worker = Worker(leases=LeaseStore(url, ttl=30), worker_name="w-fence", on_lease_lost=lost.append)
    worker._stop.set()  # renewals only: no take-over scan (it would need a Prefect server)
    assert worker.leases is not None
    run = uuid.uuid4()
    assert worker.leases.acquire(run, "INC-F", "w-fence")
    worker._active[run] = threading.current_thread()
    worker.lease_round()
    assert lost == []
    worker.leases.release(run)  # gone while still executing here: taken over elsewhere
    worker.lease_round()
    assert lost == [{run}]
    worker._active.pop(run)  # finished: its released lease is not a loss
    worker.lease_round()
    assert lost == [{run}]
    worker.leases.close()


def _worker_grants() -> list[str]:
    """The worker role's statements from docs/operations.md, as written."""
    doc = (Path(__file__).parents[3] / "docs" / "operations.md").read_text(encoding="utf-8")
    sql = next(b.split("```", 1)[0] for b in doc.split("```sql")[1:] if "stanch_worker" in b.split("```", 1)[0])
    return [s.split("--")[0].strip() for s in re.split(r";\s*(?:--[^\n]*)?\n", sql) if s.strip()]


def test_the_documented_worker_role_uses_leases_without_create_rights(url: str) -> None:
    """B2: `CREATE TABLE IF NOT EXISTS` on every connect needs CREATE on the schema even when the
    table exists, so the documented stanch_worker role could not use leases at all."""
    LeaseStore(url).ensure_schema()  # the owner's first start creates the table
    role, db = f"stanch_worker_{uuid.uuid4().hex[:6]}", url.rsplit("/", 1)[1]
    with psycopg.connect(url, autocommit=True) as owner:
        owner.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        for stmt in _worker_grants():
            owner.execute(stmt.replace("stanch_worker", role).replace("DATABASE stanch ", f"DATABASE {db} ")
                          .replace("PASSWORD '…'", ""))
    worker = LeaseStore(url.replace("postgres@", f"{role}@"), ttl=30)
    try:
        run = uuid.uuid4()
        assert worker.acquire(run, "INC-ROLE", "w1") and worker.renew("w1", [run]) == set()
        assert worker.holders()[run] == "w1" and worker.take_expired("w1") == []
        worker.release(run, "w1")
        with psycopg.connect(worker.url, autocommit=True) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE stanch_sneaky (x int)")
    finally:
        worker.close()
        with psycopg.connect(url, autocommit=True) as owner:
            owner.execute(f"DROP OWNED BY {role}")
            owner.execute(f"DROP ROLE {role}")
    # before the owner created the table, the role is told what to do (not a bare InsufficientPrivilege)
    with psycopg.connect(url, autocommit=True) as owner:
        owner.execute("ALTER TABLE stanch_run_leases RENAME TO stanch_run_leases_kept")
        owner.execute(f"CREATE ROLE {role} LOGIN")
        owner.execute(f"GRANT CONNECT ON DATABASE {db} TO {role}")
    try:
        with pytest.raises(ConfigurationError, match="does not exist and this role may not create it"):
            LeaseStore(url.replace("postgres@", f"{role}@")).ensure_schema()
    finally:
        with psycopg.connect(url, autocommit=True) as owner:
            owner.execute("ALTER TABLE stanch_run_leases_kept RENAME TO stanch_run_leases")
            owner.execute(f"DROP OWNED BY {role}")
            owner.execute(f"DROP ROLE {role}")
