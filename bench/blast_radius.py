"""Blast-radius containment benchmark: revoke 1,000 access keys across 20 accounts.

Seeds N accounts x U users x 2 access keys (IAM's per-user limit, enforced by moto) in a moto
server running in its own process, adds a per-request latency on the server (the sandbox fault
injector's latency rule; real IAM round trips are ~20-60 ms, moto answers in ~3-4 ms), then times
three contestants doing exactly the same AWS calls — per user ``ListAccessKeys`` and one
``UpdateAccessKey(Status=Inactive)`` per Active key:

1. a plain sequential boto3 script (one thread);
2. a tuned concurrent boto3 script (``ThreadPoolExecutor(16)``, one client per account shared by
   the threads, ``max_pool_connections=32``);
3. stanch: ``bench/runbooks/revoke.yaml`` (one ``for_each`` step, ``concurrency: 16``) through the
   real engine, ``flows.engine.runtime.run_runbook(..., return_state=True)`` under
   ``prefect_test_harness`` (a temporary Prefect server on SQLite, started before the clock and
   reported separately), heartbeats off, after one untimed warm-up run on that server (``--cold``:
   none). Timed: flow start, 32 task runs of 16 items, 20 STS AssumeRoles, timeline events, step
   report, artifact, post-mortem.

Every contestant starts from all keys Active; afterwards the bench checks in moto that every key
is Inactive and counts the requests the server saw (nobody can skip work). It prints wall time,
calls/s, the ratios and PASS/MISS against the targets (stanch within 1.3x of the tuned script, at
least 4x faster than the sequential one). It exits 0 even when a target is missed.

    .venv/bin/python bench/blast_radius.py [--accounts 20] [--users 25] [--latency-ms 25]
        [--jitter-ms 0] [--threads 16] [--skip-sequential] [--profile] [--what-if] [--scale]
        [--cold] [--batch N] [--repeat N]

``--profile`` adds a breakdown of where stanch's time goes (timeline appends, reports, artifacts,
task submission/collection in the flow thread, action time in worker threads) by wrapping those
functions in this process, plus a cProfile of the flow thread. The wrappers cost a little time, so
the profiled run is reported separately from the timed one.

Owns: nothing but this measurement. Must not touch: real AWS (loopback moto only), Slack.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

from integrations.sandbox.faults import clear_faults, inject_latency, list_faults  # noqa: E402

RUNBOOK = Path(__file__).resolve().parent / "runbooks" / "revoke.yaml"
REGION = "us-east-1"
TARGET_VS_TUNED = 1.3
TARGET_VS_SEQUENTIAL = 4.0
_SETUP_THREADS = 8


# ----- moto in its own process ----------------------------------------------------------------------
def serve_moto() -> int:
    """Child mode: start ``MotoServer``, print its URL, serve until stdin closes."""
    from integrations.sandbox.moto_server import MotoServer

    with MotoServer() as srv:
        print(srv.url, flush=True)
        sys.stdin.read()
    return 0


MOTO_PID = 0


@contextlib.contextmanager
def moto_process() -> Iterator[str]:
    """moto (behind the fault injector) in a separate process, so it has its own GIL and core —
    as AWS's CPU is not ours."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-moto"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"moto server did not start (got {url!r})")
        global MOTO_PID
        MOTO_PID = proc.pid
        yield url
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ----- fleet ----------------------------------------------------------------------------------------
@dataclass
class Fleet:
    url: str
    accounts: list[str]
    keys: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (account, user) -> key ids

    @property
    def users(self) -> list[tuple[str, str]]:
        return list(self.keys)

    @property
    def n_keys(self) -> int:
        return sum(len(v) for v in self.keys.values())


def _pin_account(client: Any, account: str) -> Any:
    """Same as ``integrations.aws.session`` does for loopback endpoints: moto's per-request account."""

    def add_header(request: Any, **_: Any) -> None:
        request.headers["x-moto-account-id"] = account

    client.meta.events.register("before-sign.*.*", add_header)
    return client


def iam_clients(url: str, accounts: list[str], pool: int) -> dict[str, Any]:
    """One IAM client per account (botocore clients are thread-safe; creating one is not cheap)."""
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    config = Config(
        retries={"mode": "standard", "max_attempts": 3},
        max_pool_connections=pool,
        connect_timeout=5,
        read_timeout=30,
        tcp_keepalive=True,
    )
    return {acct: _pin_account(session.client("iam", endpoint_url=url, config=config), acct) for acct in accounts}


def seed(url: str, n_accounts: int, n_users: int) -> Fleet:
    accounts = [f"{210000000000 + i:012d}" for i in range(1, n_accounts + 1)]
    fleet = Fleet(url, accounts)
    clients = iam_clients(url, accounts, 32)

    def make(pair: tuple[str, str]) -> tuple[tuple[str, str], list[str]]:
        acct, user = pair
        iam = clients[acct]
        iam.create_user(UserName=user)
        return pair, [iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"] for _ in range(2)]

    pairs = [(a, f"ci-deploy-{u:03d}") for a in accounts for u in range(n_users)]
    with ThreadPoolExecutor(_SETUP_THREADS) as pool:
        fleet.keys = dict(pool.map(make, pairs))
    # IAM allows two keys per user and moto enforces it: the fleet really is 2 keys x user.
    acct, user = pairs[0]
    try:
        clients[acct].create_access_key(UserName=user)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "LimitExceeded", exc
    else:
        raise AssertionError("moto accepted a third access key")
    return fleet


def reset(fleet: Fleet) -> None:
    """Every key back to Active (no latency rule in place)."""
    clients = iam_clients(fleet.url, fleet.accounts, 32)
    work = [(a, u, k) for (a, u), ks in fleet.keys.items() for k in ks]
    with ThreadPoolExecutor(_SETUP_THREADS) as pool:
        list(
            pool.map(
                lambda t: clients[t[0]].update_access_key(UserName=t[1], AccessKeyId=t[2], Status="Active"),
                work,
            )
        )


def key_statuses(fleet: Fleet) -> dict[str, int]:
    """``{"Active": n, "Inactive": m}`` over the whole fleet, read back from moto."""
    clients = iam_clients(fleet.url, fleet.accounts, 32)

    def statuses(pair: tuple[str, str]) -> list[str]:
        return [m["Status"] for m in clients[pair[0]].list_access_keys(UserName=pair[1])["AccessKeyMetadata"]]

    counts: dict[str, int] = defaultdict(int)
    with ThreadPoolExecutor(_SETUP_THREADS) as pool:
        for sts in pool.map(statuses, fleet.users):
            for s in sts:
                counts[s] += 1
    return dict(counts)


# ----- CPU accounting (Linux /proc; empty elsewhere) ---------------------------------------------------
_CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu() -> dict[int, tuple[int, float]]:
    """{pid: (ppid, cpu seconds)} for every process we can read."""
    out: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        out[int(entry.parent.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _CLK)
    return out


def cpu_snapshot(moto_pid: int) -> dict[str, float]:
    """CPU seconds so far of this process, the moto process, and our other descendants (Prefect server)."""
    procs = _proc_cpu()
    me = os.getpid()
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _) in procs.items():
        children[ppid].append(pid)
    others, todo = 0.0, [c for c in children[me] if c != moto_pid]
    while todo:
        pid = todo.pop()
        others += procs[pid][1]
        todo.extend(children[pid])
    return {
        "bench process": procs.get(me, (0, 0.0))[1],
        "moto": procs.get(moto_pid, (0, 0.0))[1],
        "Prefect server": others,
    }


# ----- the two boto3 contestants ---------------------------------------------------------------------
def revoke_user(iam: Any, user: str) -> int:
    """What every contestant does per user; returns the number of AWS calls made."""
    calls = 1
    for meta in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
        if meta["Status"] == "Active":
            iam.update_access_key(UserName=user, AccessKeyId=meta["AccessKeyId"], Status="Inactive")
            calls += 1
    return calls


def sequential(fleet: Fleet) -> int:
    clients = iam_clients(fleet.url, fleet.accounts, 10)
    return sum(revoke_user(clients[acct], user) for acct, user in fleet.users)


def tuned(fleet: Fleet, threads: int) -> int:
    clients = iam_clients(fleet.url, fleet.accounts, max(32, threads))
    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(lambda pair: revoke_user(clients[pair[0]], pair[1]), fleet.users))


# ----- stanch ------------------------------------------------------------------------------------------
def _engine_env(url: str, home: Path) -> None:
    """Environment for the engine; must be in place before prefect is imported."""
    os.environ.update(
        PREFECT_HOME=str(home / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_SERVER_LOGGING_LEVEL="CRITICAL",
        PREFECT_LOGGING_LEVEL="WARNING",
        STANCH_AWS_ENDPOINT_URL=url,
        STANCH_HOME=str(home / "stanch"),
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
    )
    for var in ("STANCH_SLACK_TOKEN", "STANCH_SLACK_BASE_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(var, None)


class PhaseTimer:
    """Wall time per named phase, summed over threads (``--profile`` only)."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: Any, attr: str, phase: str) -> None:
        original = getattr(owner, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                with self._lock:
                    self.total[phase] += dt
                    self.count[phase] += 1

        setattr(owner, attr, timed)
        self._undo.append(lambda: setattr(owner, attr, original))

    def restore(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()


@dataclass
class StanchRun:
    wall: float
    outcome: str
    events: int
    incident: Path
    profile: str = ""


class _NoFsyncOs:
    """What-if stand-in for ``os`` inside ``flows.engine.timeline``: no fsync at all (the bound any
    group commit can reach)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    @staticmethod
    def fsync(fd: int) -> None:
        return None

    @staticmethod
    def fdatasync(fd: int) -> None:
        return None


WHAT_IFS = {
    "observed-not-durable": "action.* events (one action.observed per item) not fsynced per event",
    "group-commit": "durable events fsynced after the lock is released, one fsync for all waiting appenders",
    "nofsync": "no fsync at all (the bound for a group commit of durable events)",
}


def _timeline_sync(fd: int) -> None:
    from flows.engine.timeline import _sync

    _sync(fd)


def _group_commit(original: Callable[..., dict[str, Any]], durable: frozenset[str]) -> Callable[..., Any]:
    """What-if ``Timeline.append`` with a group commit (the change proposed for the timeline): the
    event is written under the lock as today but not fsynced there; then, outside the lock, the first
    waiter fsyncs the file and the head once for every event written so far and the others find
    theirs already synced. Each durable event is still on disk before ``append`` returns."""
    sync_lock = threading.Lock()
    synced: dict[int, int] = {}  # id(timeline) -> last seq known to be on disk

    def append(self: Any, kind: str, **kwargs: Any) -> dict[str, Any]:
        event = original(self, kind, **kwargs)
        if kind.split(".", 1)[0] in durable and self.remote is None:
            with sync_lock:
                if synced.get(id(self), 0) < event["seq"]:
                    upto = self._cached[1]  # every event up to here is written and flushed
                    _timeline_sync(self._fh.fileno())
                    _timeline_sync(self._head_fd)
                    synced[id(self)] = upto
        return event

    return append


@contextlib.contextmanager
def what_if(variant: str | None) -> Iterator[None]:
    """Patch the engine *in this process only* to estimate a fix; never used for the headline figure.
    The timeline (``flows.engine.timeline``) serialises each durable event's two fsyncs (file + head)
    under its lock; these variants show what that costs."""
    if variant is None:
        yield
        return
    import flows.engine.timeline as tl

    saved_durable, saved_os, saved_append = tl.DURABLE, tl.os, tl.Timeline.append
    if variant == "group-commit":
        tl.Timeline.append = _group_commit(saved_append, saved_durable)  # type: ignore[method-assign]
        tl.DURABLE = frozenset()
    if variant == "observed-not-durable":
        tl.DURABLE = frozenset(tl.DURABLE - {"action"})
    if variant == "nofsync":
        tl.os = _NoFsyncOs()  # type: ignore[assignment]
    try:
        yield
    finally:
        tl.DURABLE, tl.os = saved_durable, saved_os
        tl.Timeline.append = saved_append  # type: ignore[method-assign]


def runbook_with_batch(batch: int | None, home: Path) -> Path:
    """``bench/runbooks/revoke.yaml``, or a copy of it with another ``batch:`` (``--batch``)."""
    if batch is None:
        return RUNBOOK
    text = RUNBOOK.read_text(encoding="utf-8")
    assert "    batch: 16\n" in text
    path = home / f"revoke-batch-{batch}.yaml"
    path.write_text(text.replace("    batch: 16\n", f"    batch: {batch}\n"), encoding="utf-8")
    return path


def run_stanch(fleet: Fleet, home: Path, *, profile: bool, variant: str | None = None,
               runbook: Path = RUNBOOK, users: list[tuple[str, str]] | None = None,
               label: str = "") -> StanchRun:
    from flows.engine.runtime import run_runbook
    from integrations.aws.session import clear_client_cache

    targets = [{"account": a, "user": u, "name": f"{a}/{u}"} for a, u in (users or fleet.users)]
    clear_client_cache()  # a fresh process would have no cached sessions: pay the AssumeRoles
    store = home / "incidents"
    incident_id = f"BENCH-{time.strftime('%H%M%S')}-{variant or ''}{label}{'p' if profile else 't'}"
    timer = PhaseTimer()
    prof = cProfile.Profile() if profile else None
    if profile or variant:
        import prefect.task_engine as te

        import flows.engine.scheduler as rt
        import flows.engine.timeline as tl
        import integrations.aws.iam as iam_mod
        from flows.engine.incident import Incident
        from flows.engine.timeline import Timeline

        timer.wrap(Timeline, "append", "timeline append (all threads)")
        timer.wrap(tl, "_sync", "  of which: fdatasync (all threads, timeline)")
        timer.wrap(rt, "render_step_report", "step report render")
        timer.wrap(rt, "create_markdown_artifact", "Prefect artifact")
        timer.wrap(Incident, "render_postmortem", "post-mortem render")
        timer.wrap(rt.Engine, "_pump", "flow thread: submit task runs (_pump)")
        timer.wrap(rt.Engine, "_collect", "flow thread: collect results (_collect)")
        timer.wrap(rt.Engine, "_complete_step", "flow thread: complete step (+report)")
        timer.wrap(rt.Engine, "execute", "worker threads: action incl. AWS calls")
        timer.wrap(te, "run_task_sync", "worker threads: whole Prefect task run")
        timer.wrap(iam_mod, "clients_for", "  action: clients_for (AssumeRole, cache)")
        timer.wrap(iam_mod, "list_key_statuses", "  action: ListAccessKeys")
        timer.wrap(iam_mod, "_set_status", "  action: UpdateAccessKey")
        timer.wrap(rt.Engine, "record", "Engine.record (timeline + listeners)")
    thread_profs: list[cProfile.Profile] = []

    def boot_thread_profiler(*_: Any) -> None:  # first profile event of each new thread
        sys.setprofile(None)
        tp = cProfile.Profile()
        thread_profs.append(tp)
        tp.enable()

    with what_if(variant):
        if prof is not None:
            threading.setprofile(boot_thread_profiler)  # worker threads started from now on
        t0 = time.perf_counter()
        if prof is not None:
            prof.enable()
        state = run_runbook(
            str(runbook),
            {"targets": targets},
            incident_id,
            str(store),
            False,
            "bench",
            return_state=True,
        )
        if prof is not None:
            prof.disable()
            threading.setprofile(None)
        wall = time.perf_counter() - t0
    timer.restore()
    folder = store / incident_id
    events = sum(1 for line in (folder / "timeline.jsonl").read_text().splitlines() if line.strip())
    report = ""
    if profile or variant:
        out = io.StringIO()
        out.write(f"  phases (wall seconds summed over threads; flow wall {wall:.2f} s):\n")
        for phase, secs in timer.total.items():
            each = 1000 * secs / max(1, timer.count[phase])
            out.write(f"    {phase:<45} {secs:8.2f} s  n={timer.count[phase]:<5} {each:7.2f} ms each\n")
        if prof is not None:
            out.write("  cProfile of the flow (main) thread, top 22 by cumulative time:\n")
            stats = pstats.Stats(prof, stream=out)
            stats.sort_stats("cumulative").print_stats(22)
            if thread_profs:
                out.write(f"  cProfile of all {len(thread_profs)} other threads, top 30 by own (tot) time:\n")
                wstats = pstats.Stats(*thread_profs, stream=out)
                wstats.sort_stats("tottime").print_stats(30)
        report = out.getvalue()
    name = str(getattr(state, "name", "?"))
    return StanchRun(wall, name, events, folder, report)


# ----- driver ------------------------------------------------------------------------------------------
COUNTED = ("ListAccessKeys", "UpdateAccessKey", "AssumeRole")


@dataclass
class Result:
    name: str
    wall: float
    calls: int  # requests moto saw (server side)
    inactive: int
    total: int
    by_action: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0  # this process's peak RSS during the contestant (VmHWM, reset before)

    @property
    def rate(self) -> float:
        return self.calls / self.wall if self.wall else 0.0


def _reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (Linux >= 4.0: write 5 to clear_refs). False where
    that is not allowed: the figure is then the process's peak so far (ru_maxrss)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB: VmHWM from /proc (resettable), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def contest(fleet: Fleet, name: str, latency_ms: float, jitter_ms: float, body: Callable[[], Any]) -> Result:
    clear_faults(fleet.url)
    reset(fleet)
    before = key_statuses(fleet)
    assert before.get("Active") == fleet.n_keys, f"reset failed: {before}"
    # Installed even at 0 ms: the rule's `fired` counter is the server-side request count.
    latency = inject_latency(fleet.url, "*", delay_ms=latency_ms, jitter_ms=jitter_ms)
    for action in COUNTED:  # zero-delay rules: per-operation request counters
        inject_latency(fleet.url, action, delay_ms=0)
    cpu0 = cpu_snapshot(MOTO_PID)
    rss_reset = _reset_peak_rss()
    t0 = time.perf_counter()
    body()
    wall = time.perf_counter() - t0
    peak = _peak_rss_mb()
    cpu = {k: v - cpu0[k] for k, v in cpu_snapshot(MOTO_PID).items()}
    fired = {r.action if r.id != latency else "*": r.fired for r in list_faults(fleet.url)}
    clear_faults(fleet.url)
    after = key_statuses(fleet)
    by_action = {a: fired.get(a, 0) for a in COUNTED}
    result = Result(name, wall, fired["*"], after.get("Inactive", 0), sum(after.values()), by_action, cpu, peak)
    ok = "all Inactive" if result.inactive == fleet.n_keys else f"ONLY {result.inactive}/{fleet.n_keys} Inactive"
    ops = ", ".join(f"{a} {n}" for a, n in by_action.items() if n)
    print(f"  {name:<34} {wall:7.2f} s  {result.calls:5d} calls ({ops})  {ok}", flush=True)
    print("    CPU s: " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
          + f"; peak RSS of this process {peak:.0f} MiB" + ("" if rss_reset else " (ru_maxrss: peak so far)"),
          flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--accounts", type=int, default=20)
    p.add_argument("--users", type=int, default=25, help="users per account (2 keys each)")
    p.add_argument("--latency-ms", type=float, default=25.0, help="added to every AWS request (0 = raw moto)")
    p.add_argument("--jitter-ms", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=16, help="threads of the tuned script")
    p.add_argument("--skip-sequential", action="store_true", help="leave the sequential script out (saves ~45 s)")
    p.add_argument("--profile", action="store_true", help="also run stanch once more with a phase breakdown")
    p.add_argument(
        "--what-if",
        action="store_true",
        help="also run stanch with in-process patches that estimate timeline fixes: " + "; ".join(WHAT_IFS.values()),
    )
    p.add_argument(
        "--scale",
        action="store_true",
        help="the 10,000-key run: 100 accounts x 50 users x 2 keys, sequential left out (~6 min)",
    )
    p.add_argument(
        "--cold",
        action="store_true",
        help="time stanch's first flow run on the fresh Prefect server (default: an untimed warm-up run first)",
    )
    p.add_argument("--batch", type=int, default=None, help="override the runbook's `batch: 16` (what-if)")
    p.add_argument(
        "--repeat",
        type=int,
        default=0,
        help="then N more (tuned, stanch) pairs, back to back, and their medians: CPU figures of one run "
        "swing by ±20 %% on a loaded box, a pair's difference much less",
    )
    p.add_argument("--serve-moto", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_moto:
        return serve_moto()
    if args.scale:
        args.accounts, args.users, args.skip_sequential = 100, 50, True

    print(
        f"blast radius: {args.accounts} accounts x {args.users} users x 2 keys = "
        f"{args.accounts * args.users * 2} keys; latency {args.latency_ms:g} ms (+0..{args.jitter_ms:g} jitter); "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="stanch-bench-") as tmp, moto_process() as url:
        home = Path(tmp)
        t0 = time.perf_counter()
        fleet = seed(url, args.accounts, args.users)
        print(f"  seeded {fleet.n_keys} keys for {len(fleet.users)} users in {time.perf_counter() - t0:.1f} s")
        results: dict[str, Result] = {}
        if not args.skip_sequential:
            results["sequential"] = contest(
                fleet, "sequential boto3", args.latency_ms, args.jitter_ms, lambda: sequential(fleet)
            )
        results["tuned"] = contest(
            fleet,
            f"tuned boto3 ({args.threads} threads)",
            args.latency_ms,
            args.jitter_ms,
            lambda: tuned(fleet, args.threads),
        )

        _engine_env(url, home)
        t_imp = time.perf_counter()
        from prefect.settings import temporary_settings
        from prefect.testing.utilities import prefect_test_harness

        import flows.engine.runtime  # noqa: F401  (import cost is not part of the run)
        from integrations.base import default_registry

        # Loading the action registry imports every integration (slack_sdk, jsonschema, cryptography …):
        # start-up cost like the imports above, paid once per process (`stanch worker` pays it at boot).
        default_registry()

        imports = time.perf_counter() - t_imp
        t_srv = time.perf_counter()
        with (
            prefect_test_harness(server_startup_timeout=60),
            temporary_settings(updates={"flows.heartbeat_frequency": None}),
        ):
            startup = time.perf_counter() - t_srv
            box: dict[str, StanchRun] = {}

            runbook = runbook_with_batch(args.batch, home)

            def go(profile: bool, variant: str | None = None) -> None:
                box["run"] = run_stanch(fleet, home, profile=profile, variant=variant, runbook=runbook)

            if not args.cold:
                # A worker's Prefect server and process are warm when an incident comes: the first flow
                # run on a fresh server pays its lazy set-up (~0.6 CPU-s there) and the process its own
                # (templates compiled, models loaded; ~0.5 CPU-s). One small run first, not timed.
                cpu0, w0 = cpu_snapshot(MOTO_PID), time.perf_counter()
                warm = run_stanch(fleet, home, profile=False, runbook=runbook, users=fleet.users[:16], label="w")
                spent = {k: v - cpu0[k] for k, v in cpu_snapshot(MOTO_PID).items()}
                print(f"  warm-up run (16 users, excluded): {time.perf_counter() - w0:.2f} s, state {warm.outcome}; "
                      "CPU s: " + ", ".join(f"{k} {v:.1f}" for k, v in spent.items()), flush=True)

            results["stanch"] = contest(
                fleet, f"stanch (concurrency 16, batch {args.batch or 16})", args.latency_ms, args.jitter_ms,
                lambda: go(False),
            )
            run = box["run"]
            print(
                f"    state {run.outcome}; {run.events} timeline events; Prefect server start-up "
                f"{startup:.1f} s and engine import + registry {imports:.1f} s (both excluded)",
                flush=True,
            )
            pairs: list[tuple[Result, Result]] = [(results["tuned"], results["stanch"])]
            for _ in range(args.repeat):
                tu_ = contest(fleet, f"tuned boto3 ({args.threads} threads)", args.latency_ms, args.jitter_ms,
                              lambda: tuned(fleet, args.threads))
                st_ = contest(fleet, f"stanch (concurrency 16, batch {args.batch or 16})", args.latency_ms,
                              args.jitter_ms, lambda: go(False))
                pairs.append((tu_, st_))
            profiled: StanchRun | None = None
            what_if_runs: dict[str, StanchRun] = {}
            if args.profile:
                contest(fleet, "stanch, profiled", args.latency_ms, args.jitter_ms, lambda: go(True))
                profiled = box["run"]

            if args.what_if:
                for variant in WHAT_IFS:
                    results[f"what-if {variant}"] = contest(
                        fleet,
                        f"stanch what-if: {variant}",
                        args.latency_ms,
                        args.jitter_ms,
                        lambda v=variant: go(False, v),  # type: ignore[misc]
                    )
                    what_if_runs[variant] = box["run"]
            t_close = time.perf_counter()
        print(f"    Prefect server shut down in {time.perf_counter() - t_close:.1f} s (excluded)")

    print()
    print(f"{'contestant':<34} {'wall s':>8} {'calls':>6} {'calls/s':>8} {'keys Inactive':>14} {'peak RSS MiB':>13}")
    for r in results.values():
        print(f"{r.name:<34} {r.wall:8.2f} {r.calls:6d} {r.rate:8.0f} {r.inactive:>7d}/{r.total:<6d} "
              f"{r.peak_rss_mb:13.0f}")
    st, tu = results["stanch"], results["tuned"]
    vs_tuned = st.wall / tu.wall
    print()
    print(
        f"stanch / tuned      = {vs_tuned:5.2f}x  (target <= {TARGET_VS_TUNED}x)  "
        f"{'PASS' if vs_tuned <= TARGET_VS_TUNED else 'MISS'}"
    )
    if "sequential" in results:
        vs_seq = results["sequential"].wall / st.wall
        print(
            f"sequential / stanch = {vs_seq:5.2f}x  (target >= {TARGET_VS_SEQUENTIAL}x)  "
            f"{'PASS' if vs_seq >= TARGET_VS_SEQUENTIAL else 'MISS'}"
        )
        print(f"sequential / tuned  = {results['sequential'].wall / tu.wall:5.2f}x")
    for key, r in results.items():
        if key.startswith("what-if"):
            print(f"{r.name} / tuned = {r.wall / tu.wall:5.2f}x (estimate, engine patched in-process)")
    if len(pairs) > 1:
        n_items = len(fleet.users)
        extra = [s_.cpu["bench process"] - t_.cpu["bench process"] for t_, s_ in pairs]
        server = [s_.cpu["Prefect server"] for _, s_ in pairs]
        ratio = [s_.wall / t_.wall for t_, s_ in pairs]
        print(f"{len(pairs)} pairs, medians: stanch / tuned {statistics.median(ratio):.2f}x (each: "
              + ", ".join(f"{r:.2f}" for r in ratio) + f"); the engine's CPU beyond the tuned script: "
              f"{statistics.median(extra):.2f} s in this process + {statistics.median(server):.2f} s in the Prefect "
              f"server = {1000 * (statistics.median(extra) + statistics.median(server)) / n_items:.1f} ms per item "
              f"({n_items} items)")
    if any(r.inactive != fleet.n_keys for r in results.values()):
        print("WARNING: a contestant left keys Active (see above)")
    if profiled is not None:
        print()
        print(f"stanch profile (profiled run: {profiled.wall:.2f} s)")
        print(profiled.profile)
    for variant, wrun in what_if_runs.items():
        print(f"stanch what-if {variant} ({WHAT_IFS[variant]}): {wrun.wall:.2f} s")
        print(wrun.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
