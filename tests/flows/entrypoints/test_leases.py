"""Run leases against a real PostgreSQL (a database of its own, dropped after): one holder per
run, renewals, expiry, and exactly one winner when several workers race for an expired lease."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from flows.entrypoints.cluster import database_url, drop_database, ensure_database, postgres_reachable
from flows.entrypoints.leases import LeaseStore

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
