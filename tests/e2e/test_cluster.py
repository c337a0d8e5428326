"""The distributed mode for real: a Prefect server on PostgreSQL (its own database, created and
dropped here), the incident record in PostgreSQL (the PostgreSQL store, same database as the run
leases: ``stanch cluster``'s default), and two ``stanch worker`` processes with run leases, started
by ``stanch cluster``'s ``up``; incidents submitted with ``run_deployment`` like the Slack app
does. Timelines are read from the database (never from a worker's working copy); every incident's
record is verified — signatures included — from the database and from ``stanch export``, by a
client that trusts only the key ``stanch cluster up`` handed to the workers.

One cluster, one test function with three phases (start-up is most of the cost, and pytest-xdist
would start a cluster per worker for separate tests). The SIGKILL phase runs last: it leaves one
worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings
from sandboxes import seeded_sandbox
from typer.testing import CliRunner

from flows.entrypoints.cluster import (
    ClusterConfig,
    ClusterState,
    down,
    drop_database,
    postgres_reachable,
    process_alive,
    read_state,
    up,
)
from flows.entrypoints.leases import LeaseStore
from flows.store.postgres import PostgresStore
from integrations.aws.session import clients_for
from integrations.sandbox import Sandbox, clear_faults, inject_fault
from integrations.settings import StanchSettings

HERE = Path(__file__).parent
POSTGRES = os.environ.get("STANCH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
ACCOUNTS = ["444444444401", "444444444402", "444444444403", "444444444404", "444444444405"]
SMALL_RUNBOOK = """\
name: cluster-small
title: Two small steps (the 10-incidents phase measures the cluster, not the engine)
steps:
  - id: first
    action: core.note
    with: {message: "first {{ incident.id }}"}
  - id: second
    needs: [first]
    action: core.note
    with: {message: second}
"""
APPROVAL_RUNBOOK = """\
name: cluster-approval
title: One gated step
steps:
  - id: prepare
    action: core.note
    with: {message: prepared}
  - id: approve-go
    needs: [prepare]
    approval:
      approvers: [U0LEAD1]
      min_approvals: 1
      expires: 2m
      message: Go ahead
  - id: go
    needs: [approve-go]
    action: core.note
    with: {message: "went after {{ steps['approve-go'].output.approved_by | join(' and ') }}"}
"""

_unreachable = postgres_reachable(POSTGRES)
pytestmark = pytest.mark.skipif(_unreachable is not None,
                                reason=f"PostgreSQL at {POSTGRES} is not reachable ({_unreachable})")


@dataclass
class Cluster:
    state: ClusterState
    sandbox: Sandbox
    root: Path
    leases: LeaseStore
    approver_key: Path

    def submit(self, runbook: Path, incident: str, inputs: dict[str, Any] | None = None) -> Any:
        with temporary_settings(updates={PREFECT_API_URL: self.state.prefect_api_url}):
            return run_deployment("stanch-runbook/stanch", timeout=0, flow_run_name=incident, parameters={
                "runbook_path": str(runbook), "inputs": inputs or {}, "incident_id": incident,
                "store": self.state.store, "initiator": "test"})

    def runs(self, incident: str) -> list[Any]:
        with temporary_settings(updates={PREFECT_API_URL: self.state.prefect_api_url}), \
                get_client(sync_client=True) as client:
            return client.read_flow_runs(flow_run_filter=FlowRunFilter(  # by its tag: names are for people
                tags=FlowRunFilterTags(all_=[f"incident:{incident}"])))

    def events(self, incident: str) -> list[dict[str, Any]]:
        """The incident's timeline as the database holds it."""
        return [json.loads(line) for _, line in PostgresStore(self.state.store).lines(incident)]

    def verify_all(self, incidents: list[str]) -> None:
        """Each incident verified from the database and from `stanch export`'s folder (with no
        database), in-process (a CLI process per check would cost ~1.5 s each), by a client whose
        home has no key of its own: only the cluster's public key (STANCH_TIMELINE_PUBKEYS) is trusted."""
        from flows.engine.timeline_keys import key_id, load_public
        from flows.entrypoints.cli import app

        assert self.state.timeline_pubkey and self.state.timeline_key_file
        kid = key_id(load_public(self.state.timeline_pubkey)[0])
        signed = f"head signed (key {kid})"
        runner = CliRunner()
        env = {**self.state.environment(), "STANCH_HOME": str(self.root / "cli-home"), "COLUMNS": "300"}
        assert env["STANCH_TIMELINE_PUBKEYS"] == self.state.timeline_pubkey
        out = self.root / "exports"
        for incident in incidents:
            from_db = runner.invoke(app, ["timeline", "verify", incident], env=env)
            assert from_db.exit_code == 0 and signed in from_db.output and "(from postgresql://" in from_db.output, \
                (incident, from_db.output)
            export = runner.invoke(app, ["export", incident, str(out)], env=env)
            assert export.exit_code == 0, (incident, export.output)
            offline = runner.invoke(app, ["timeline", "verify", str(out / incident)],
                                    env={**env, "STANCH_STORE": str(self.root / "no-database")})
            assert offline.exit_code == 0 and signed in offline.output, (incident, offline.output)
        assert not (self.root / "cli-home" / "keys").exists()  # trusted through the handed-out key alone

    def wait_event(self, incident: str, pred: Any, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events(incident)
            if any(pred(e) for e in events):
                return events
            time.sleep(0.05)
        raise AssertionError(f"{incident}: not seen in {[e['kind'] for e in self.events(incident)]}")

    def wait_finished(self, incident: str, timeout: float = 45) -> list[Any]:
        """All flow runs of the incident, once one of them Completed and none is still going."""
        deadline = time.monotonic() + timeout
        runs: list[Any] = []
        while time.monotonic() < deadline:
            runs = self.runs(incident)
            if runs and all(r.state.is_final() for r in runs) and any(r.state.is_completed() for r in runs):
                return runs
            time.sleep(0.2)
        raise AssertionError(f"{incident}: runs {[(r.id, r.state.name) for r in runs]}; "
                             f"timeline {[e['kind'] for e in self.events(incident)]}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    database = f"stanch_test_cluster_{uuid.uuid4().hex[:10]}"
    mp = pytest.MonkeyPatch()
    sandbox_gen = seeded_sandbox(root, mp)
    sandbox = next(sandbox_gen)
    key = Ed25519PrivateKey.generate()
    (root / "U0LEAD1.key").write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()))
    public = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    (root / "approvers.keys").write_text(f"U0LEAD1 {public} U0LEAD1\n")
    mp.setenv("STANCH_APPROVER_KEYS_FILE", str(root / "approvers.keys"))
    config = ClusterConfig(home=root / "home", postgres=POSTGRES, prefect_database=database,
                           stanch_database=database, prefect_port=0, workers=2, worker_concurrency=6,
                           worker_poll=0.2, lease_ttl=3.0, lease_renew=1.0, slack=False, sandbox=False,
                           start_timeout=90)
    pids: dict[str, int] = {}
    try:
        state = up(config)
        pids = dict(state.pids)
        leases = LeaseStore(state.leases_url, ttl=3.0)
        yield Cluster(state, sandbox, root, leases, root / "U0LEAD1.key")
        leases.close()
    finally:
        down(config.home, sandbox=False, worker_grace=5)
        drop_database(POSTGRES, database)
        next(sandbox_gen, None)
        mp.undo()
    assert not [name for name, pid in pids.items() if process_alive(pid)], "`down` left processes running"
    assert read_state(config.home) is None


def ten_concurrent_incidents_all_finish(cluster: Cluster) -> None:
    incidents = [f"INC-CL-{i}" for i in range(10)]
    runbook = cluster.root / "small.yaml"
    runbook.write_text(SMALL_RUNBOOK)
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda inc: cluster.submit(runbook, inc), incidents))
    for inc in incidents:
        runs = cluster.wait_finished(inc)
        assert [r.state.type.value for r in runs] == ["COMPLETED"], (inc, runs)
        kinds = [e["kind"] for e in cluster.events(inc)]
        assert kinds.count("run.started") == 1 and kinds.count("run.finished") == 1, kinds
    assert sum(_claims(cluster).values()) >= 10, _claims(cluster)


def approval_from_another_process_resumes_the_run_where_it_is(cluster: Cluster) -> None:
    runbook = cluster.root / "approval.yaml"
    runbook.write_text(APPROVAL_RUNBOOK)
    run = cluster.submit(runbook, "INC-CL-APPROVE")
    cluster.wait_event("INC-CL-APPROVE", lambda e: e["kind"] == "approval.requested")
    holder = cluster.leases.holders().get(run.id)
    assert holder in ("worker-1", "worker-2")
    env = {**os.environ, **cluster.state.environment(), "STANCH_HOME": str(cluster.root / "cli-home"),
           "PREFECT_HOME": str(cluster.root / "cli-prefect")}
    done = subprocess.run([sys.executable, "-m", "flows.entrypoints.cli", "approve", "INC-CL-APPROVE", "approve-go",
                           "--as", "U0LEAD1", "--key", str(cluster.approver_key), "--wait", "30"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = cluster.wait_finished("INC-CL-APPROVE")
    assert [r.id for r in runs] == [run.id] and runs[0].state.is_completed()
    events = cluster.events("INC-CL-APPROVE")
    assert any(e["kind"] == "step.succeeded" and e["step"] == "go" for e in events)
    assert "INC-CL-APPROVE" in (cluster.state.logs / f"{holder}.log").read_text()  # it ran where it paused


def sigkilled_worker_mid_fan_out_is_taken_over_with_no_duplicate_side_effects(cluster: Cluster) -> None:
    settings = StanchSettings(aws_endpoint_url=cluster.sandbox.url)
    targets = []
    for i, account in enumerate(ACCOUNTS):
        bucket = f"cluster-release-{i}"
        clients_for(settings, account)("s3").create_bucket(Bucket=bucket)
        targets.append({"name": f"svc-{i}", "account": account, "bucket": bucket})
    # svc-3's first (read-only) call hangs: its worker is killed while it waits, before any write.
    inject_fault(cluster.sandbox.url, "GetObject", status=None, delay_ms=6_000, account=ACCOUNTS[3], count=1)
    incident = "INC-CL-KILL"
    run = cluster.submit(HERE / "crash.yaml", incident, {"targets": targets})
    cluster.wait_event(incident, lambda e: e["kind"] == "item.started" and e.get("item") == "svc-3")
    holder = cluster.leases.holders()[run.id]
    survivor = "worker-2" if holder == "worker-1" else "worker-1"
    killed_at = time.time()
    os.kill(cluster.state.pids[holder], signal.SIGKILL)
    clear_faults(cluster.sandbox.url)

    runs = cluster.wait_finished(incident, timeout=60)
    by_id = {r.id: r for r in runs}
    assert by_id[run.id].state.is_crashed(), by_id[run.id].state
    assert holder in (by_id[run.id].state.message or "")  # says which worker was lost
    takeover = [r for r in runs if r.id != run.id]
    assert len(takeover) == 1 and takeover[0].state.is_completed() and takeover[0].parameters["resume"] is True
    assert f"{incident}" in (cluster.state.logs / f"{survivor}.log").read_text()

    events = cluster.events(incident)
    resumed = [e for e in events if e["kind"] == "run.resumed"]
    assert len(resumed) == 1
    detect_s = datetime_ts(resumed[0]["ts"]) - killed_at
    assert detect_s < 3.0 + 1.0 + 10, detect_s  # lease TTL + renew interval + a take-over run's start
    succeeded = sorted(e["item"] for e in events if e["kind"] == "item.succeeded")
    assert succeeded == [f"svc-{i}" for i in range(5)]  # each fan-out item exactly once
    assert sum(1 for e in events if e["kind"] == "step.succeeded" and e["step"] == "prepare") == 1
    for t in targets:  # read back from moto: exactly one PutObject per bucket
        s3 = clients_for(settings, t["account"])("s3")
        versions = s3.list_object_versions(Bucket=t["bucket"], Prefix="release/latest.json").get("Versions", [])
        assert len(versions) == 1, (t, versions)
    meta = json.loads(PostgresStore(cluster.state.store).get(incident, "incident.json") or b"{}")
    assert meta["target"] == resumed[0]["data"]["target"]  # the take-over ran against the recorded target
    print(f"SIGKILL -> take-over run.resumed: {detect_s:.2f} s")


def _claims(cluster: Cluster) -> dict[str, int]:
    return {w: (cluster.state.logs / f"{w}.log").read_text().count("claimed") for w in ("worker-1", "worker-2")}


def test_cluster_runs_incidents_resumes_approvals_and_takes_over_a_killed_worker(cluster: Cluster) -> None:
    ten_concurrent_incidents_all_finish(cluster)
    approval_from_another_process_resumes_the_run_where_it_is(cluster)
    sigkilled_worker_mid_fan_out_is_taken_over_with_no_duplicate_side_effects(cluster)
    # both workers worked: asked after the take-over (the killed worker had claimed the incident, the
    # other took it over), not after the first burst, where one worker may win every race under load
    # (CI once saw {'worker-1': 0, 'worker-2': 10} there)
    assert all(_claims(cluster).values()), _claims(cluster)
    # every incident's record, signed by whichever worker wrote it (the killed one included)
    cluster.verify_all([f"INC-CL-{i}" for i in range(10)] + ["INC-CL-APPROVE", "INC-CL-KILL"])


def datetime_ts(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value).timestamp()
