"""Cluster scale benchmark: 20 concurrent incidents through ``run_deployment`` on 1 vs 2 workers,
and how long a SIGKILLed worker's incident takes to be resumed by another.

Setup (not timed): moto (behind the fault injector) in its own process, seeded with 5 accounts x
``20 x 5`` users x 2 access keys; a cluster from ``flows.entrypoints.cluster.up`` — a Prefect
server on PostgreSQL (a throwaway database, dropped at the end), ``stanch worker`` processes with
run leases, and the incident record in the PostgreSQL store of the same database (the cluster's
default; timelines are read from it, never from a worker's working copy); then ``--latency-ms``
(25) injected on every AWS call.

1. **Scale.** 20 incidents, each ``bench/runbooks/revoke.yaml`` over its own 25 users in 5
   accounts (50 keys, 75 AWS calls + 5 AssumeRoles), submitted at once with
   ``run_deployment(..., timeout=0)`` from 20 threads; wall time from the first submission to
   the last flow run's final state, with 1 worker, then (keys reset to Active) with 2 workers.
   Each phase checks in moto that every key of every incident is Inactive.
2. **Take-over.** One big incident (all users: ``--kill-keys`` keys, 2 per item) on 2 workers;
   once ``--kill-after`` items succeeded, the worker holding its lease is SIGKILLed. Reported:
   SIGKILL -> the dead run marked Crashed, SIGKILL -> the take-over run's ``run.resumed`` event,
   and items executed twice (item.succeeded recorded twice; must be 0) and keys left Active.

    .venv/bin/python bench/cluster.py [--incidents 20] [--users-per-account 5] [--latency-ms 25]
        [--concurrency 4] [--lease-ttl 10] [--renew 2] [--kill-after 60]

Needs PostgreSQL at ``STANCH_CLUSTER_POSTGRES`` (default postgresql://postgres@127.0.0.1:5432).
Owns: nothing but this measurement. Must not touch: real AWS (loopback moto only), Slack.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import blast_radius  # noqa: E402
from blast_radius import REGION, Fleet, iam_clients, moto_process, reset, seed  # noqa: E402

from integrations.sandbox.faults import clear_faults, inject_latency  # noqa: E402

RUNBOOK = ROOT / "bench" / "runbooks" / "revoke.yaml"


def events(store: Any, incident: str) -> list[dict[str, Any]]:
    """The incident's timeline as the PostgreSQL store holds it (``store``: a PostgresStore)."""
    return [json.loads(line) for _, line in store.lines(incident)]


def ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def submit(api: str, store: str, incident: str, targets: list[dict[str, str]]) -> Any:
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api}):
        return run_deployment("stanch-runbook/stanch", timeout=0, flow_run_name=incident, parameters={
            "runbook_path": str(RUNBOOK), "inputs": {"targets": targets}, "incident_id": incident,
            "store": store, "initiator": "bench"})


def wait_final(api: str, ids: list[Any], timeout: float) -> dict[Any, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    deadline = time.monotonic() + timeout
    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=200)
            if len(runs) == len(ids) and all(r.state is not None and r.state.is_final() for r in runs):
                return {r.id: r.state for r in runs}
            time.sleep(0.1)
    raise TimeoutError(f"runs not final after {timeout} s")


def runs_of(api: str, incident: str) -> list[Any]:
    """The incident's flow runs, by its ``incident:<id>`` tag (names are for people)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.engine.run_labels import incident_tag

    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[incident_tag(incident)])))


def all_inactive(fleet: Fleet, users: list[tuple[str, str]]) -> int:
    """Keys still Active among ``users`` (0 = every key revoked), read back from moto."""
    clients = iam_clients(fleet.url, fleet.accounts, 32)

    def active(pair: tuple[str, str]) -> int:
        metas = clients[pair[0]].list_access_keys(UserName=pair[1])["AccessKeyMetadata"]
        return sum(1 for m in metas if m["Status"] == "Active")

    with ThreadPoolExecutor(8) as pool:
        return sum(pool.map(active, users))


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far per named process (Linux /proc; children included once they are reaped)."""
    clk = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / clk
    return out


def scale_phase(api: str, store: str, fleet: Fleet, n_incidents: int, per_account: int, label: str,
                latency_ms: float, pids: dict[str, int]) -> float:
    reset(fleet)
    inject_latency(fleet.url, "*", delay_ms=latency_ms)
    plans = []
    for i in range(n_incidents):
        users = [(a, f"ci-deploy-{u:03d}") for a in fleet.accounts for u in range(i * per_account,
                                                                                   (i + 1) * per_account)]
        plans.append((f"BENCH-{label}-{i:02d}", users))
    cpu0 = cpu_seconds(pids)
    t0 = time.monotonic()
    with ThreadPoolExecutor(n_incidents) as pool:
        runs = list(pool.map(lambda p: submit(api, store, p[0], [{"account": a, "user": u, "name": f"{a}/{u}"}
                                                                  for a, u in p[1]]), plans))
    states = wait_final(api, [r.id for r in runs], timeout=900)
    wall = time.monotonic() - t0
    cpu1 = cpu_seconds(pids)
    clear_faults(fleet.url)
    bad = [s.name for s in states.values() if not s.is_completed()]
    left = all_inactive(fleet, [u for _, users in plans for u in users])
    print(f"  {label}: {n_incidents} incidents x {len(plans[0][1]) * 2} keys in {wall:.2f} s "
          f"(not completed: {bad or 0}; keys left Active: {left})", flush=True)
    used = {k: cpu1[k] - cpu0.get(k, 0.0) for k in cpu1}
    print("    CPU s: " + ", ".join(f"{k} {v:.1f}" for k, v in used.items())
          + f"; total {sum(used.values()):.1f} of {2 * wall:.1f} available on 2 cores", flush=True)
    return wall


def kill_phase(api: str, state: Any, fleet: Fleet, leases: Any, kill_after: int,
               latency_ms: float) -> dict[str, float]:
    from flows.store.postgres import PostgresStore

    store = PostgresStore(state.store)
    reset(fleet)
    inject_latency(fleet.url, "*", delay_ms=latency_ms)
    incident = "BENCH-KILL"
    targets = [{"account": a, "user": u, "name": f"{a}/{u}"} for a, u in fleet.users]
    run = submit(api, state.store, incident, targets)
    deadline = time.monotonic() + 300
    seen, done = 0, 0
    while time.monotonic() < deadline:  # only the lines added since the last look
        for seq, line in store.lines(incident, after=seen):
            seen = seq
            done += json.loads(line)["kind"] == "item.succeeded"
        if done >= kill_after:
            break
        time.sleep(0.02)
    holder = leases.holders()[run.id]
    killed_at = time.time()
    os.kill(state.pids[holder], signal.SIGKILL)
    done_at_kill = sum(1 for e in events(store, incident) if e["kind"] == "item.succeeded")
    while time.monotonic() < deadline:
        runs = runs_of(api, incident)
        if len(runs) == 2 and all(r.state.is_final() for r in runs):
            break
        time.sleep(0.2)
    else:
        raise TimeoutError("the take-over run did not finish")
    clear_faults(fleet.url)
    old = next(r for r in runs if r.id == run.id)
    new = next(r for r in runs if r.id != run.id)
    evs = events(store, incident)
    resumed = next(e for e in evs if e["kind"] == "run.resumed")
    succeeded = [e["item"] for e in evs if e["kind"] == "item.succeeded"]
    crashed_at = old.state.timestamp.timestamp()
    out = {"items": len(targets), "done_at_kill": done_at_kill, "kill_to_crashed_s": crashed_at - killed_at,
           "kill_to_resumed_s": ts(resumed["ts"]) - killed_at, "duplicated_items": len(succeeded) - len(set(succeeded)),
           "keys_left_active": all_inactive(fleet, fleet.users), "take_over_state": new.state.name,
           "killed": holder}
    store.close()
    print(f"  take-over: {holder} SIGKILLed after {done_at_kill}/{len(targets)} items; Crashed after "
          f"{out['kill_to_crashed_s']:.2f} s, run.resumed after {out['kill_to_resumed_s']:.2f} s; take-over run "
          f"{new.state.name}; items done twice: {out['duplicated_items']}; keys left Active: "
          f"{out['keys_left_active']}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=20)
    parser.add_argument("--accounts", type=int, default=5)
    parser.add_argument("--users-per-account", type=int, default=5, help="Per incident (x2 keys, x accounts).")
    parser.add_argument("--latency-ms", type=float, default=25.0)
    parser.add_argument("--concurrency", type=int, default=4, help="Runs per worker at once.")
    parser.add_argument("--lease-ttl", type=float, default=10.0)
    parser.add_argument("--renew", type=float, default=2.0)
    parser.add_argument("--kill-after", type=int, default=60, help="Items succeeded before the SIGKILL.")
    parser.add_argument("--postgres", default=os.environ.get("STANCH_CLUSTER_POSTGRES",
                                                             "postgresql://postgres@127.0.0.1:5432"))
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="stanch-bench-cluster-"))
    os.environ.update(PREFECT_HOME=str(work / "prefect-client"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                      DO_NOT_TRACK="1", PREFECT_LOGGING_LEVEL="WARNING", AWS_ACCESS_KEY_ID="testing",
                      AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION)
    from flows.entrypoints.cluster import ClusterConfig, add_worker, database_url, down, drop_database, up
    from flows.entrypoints.leases import LeaseStore

    database = f"stanch_bench_cluster_{uuid.uuid4().hex[:8]}"
    with moto_process() as url:
        t = time.monotonic()
        fleet = seed(url, args.accounts, args.incidents * args.users_per_account)
        print(f"moto {url}: {len(fleet.users)} users, {fleet.n_keys} keys seeded in {time.monotonic() - t:.1f} s")
        config = ClusterConfig(home=work / "home", postgres=args.postgres, prefect_database=database,
                               stanch_database=database, prefect_port=0, workers=1,
                               worker_concurrency=args.concurrency, worker_poll=0.2, lease_ttl=args.lease_ttl,
                               lease_renew=args.renew, slack=False, sandbox=False,
                               store=database_url(args.postgres, database),  # the PostgreSQL store, beside the leases
                               extra_env={"STANCH_AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing",
                                          "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION})
        try:
            t = time.monotonic()
            state = up(config)
            print(f"cluster up in {time.monotonic() - t:.1f} s: Prefect {state.prefect_ui_url} on PostgreSQL "
                  f"({database}), 1 worker x {args.concurrency} runs; {args.latency_ms:.0f} ms per AWS call")
            pids = {**state.pids, "moto": blast_radius.MOTO_PID, "bench (submit+poll)": os.getpid()}
            one = scale_phase(state.prefect_api_url, state.store, fleet, args.incidents, args.users_per_account, "1w",
                              args.latency_ms, pids)
            add_worker(state, config, "worker-2")
            pids = {**state.pids, "moto": blast_radius.MOTO_PID, "bench (submit+poll)": os.getpid()}
            two = scale_phase(state.prefect_api_url, state.store, fleet, args.incidents, args.users_per_account, "2w",
                              args.latency_ms, pids)
            print(f"  1 worker / 2 workers: {one / two:.2f}x")
            leases = LeaseStore(state.leases_url, ttl=args.lease_ttl)
            kill = kill_phase(state.prefect_api_url, state, fleet, leases, args.kill_after, args.latency_ms)
            leases.close()
            print(json.dumps({"one_worker_s": round(one, 2), "two_workers_s": round(two, 2),
                              "ratio": round(one / two, 2), "lease_ttl_s": args.lease_ttl, "renew_s": args.renew,
                              **{k: round(v, 2) if isinstance(v, float) else v for k, v in kill.items()}}))
        finally:
            down(config.home, sandbox=False, worker_grace=5)
            drop_database(args.postgres, database)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
