"""``stanch cluster up|down|status``: the distributed topology on one machine, for development and tests.

``up`` starts, on loopback: a Prefect server on PostgreSQL (its own database on the machine's
PostgreSQL, created if missing), N ``stanch worker`` processes executing ``stanch-runbook/stanch``
with run leases in a second database (a dead worker's incidents are taken over), optionally the
Slack app (``STANCH_SLACK_LAUNCHER=deployment``: slash commands become ``run_deployment`` calls)
and the sandbox (moto + Slack stand-in). Each process logs to ``<home>/cluster/logs/<name>.log``;
``<home>/cluster/cluster.json`` (mode 0600: its URLs may carry a database password) holds the URLs
and pids. ``down`` stops the Slack app, then every worker at once: SIGINT and ``worker_grace`` s
(``--grace``, 20 s by default) to let their runs finish, then they mark the rest Crashed and expire
their leases (handed over at once); ``down`` SIGKILLs a worker only ``STOP_MARGIN`` s after its
grace; then the Prefect server (SIGTERM, then SIGKILL) and the sandbox, if this cluster started it.
``postgres`` is a server URL without a database: the Prefect server's database is
``prefect_database`` (``stanch_prefect``), the run leases' ``stanch_database`` (``stanch``), both
created if missing. Every URL shown to a person (``up``'s output, ``status``, errors) has its
password removed; the processes get the real URLs through their environment (never their command
line). The incident store is passed through untouched: ``STANCH_STORE`` (a folder, or
``postgresql://…`` with the PostgreSQL store) as given, else the PostgreSQL store in the ``stanch``
database (beside the run leases). One timeline
signing key serves every process: ``STANCH_TIMELINE_KEY`` as given, else the cluster home's
installation key (``<home>/keys/timeline-ed25519.pem``, created if missing), handed to every worker
and the Slack app; its public half is in the client environment (``STANCH_TIMELINE_PUBKEYS``), so a
record written by any worker verifies from any shell.

Production runs the same topology under systemd (docs/operations.md).

Owns: ``ClusterConfig``, ``ClusterState``, ``up``, ``down``, ``status``, database creation, ``shown`` (a URL
without its password).
Must not touch: what a worker does (``flows.entrypoints.worker``), the engine, the store backends.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import urllib3
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field

from integrations.errors import ConfigurationError
from integrations.sandbox.state import process_alive

STATE_FILE = "cluster.json"
DEPLOYMENT = "stanch-runbook/stanch"
WORKER_GRACE = 20.0
"""Default ``--grace`` of a cluster's workers: seconds their runs get to finish after ``down``."""
STOP_MARGIN = 10.0
"""What ``down`` adds to a worker's grace before SIGKILL: marking leftover runs Crashed, expiring their
leases and exiting take well under this."""
_http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=1.0, read=3.0), retries=False)


class ClusterConfig(BaseModel):
    """What ``up`` starts. ``postgres`` is a server URL without a database (its user must be
    allowed to CREATE DATABASE the first time); ``up`` refuses one naming a database."""

    model_config = ConfigDict(extra="forbid")

    home: Path = Field(default=Path(".stanch"), description="STANCH_HOME; state in <home>/cluster.")
    postgres: str = Field(default="postgresql://postgres@127.0.0.1:5432", description="PostgreSQL server.")
    prefect_database: str = Field(default="stanch_prefect", description="Database of the Prefect server.")
    stanch_database: str = Field(default="stanch", description="Database of the run leases (and the store).")
    prefect_port: int = Field(default=4200, ge=0, le=65535, description="Prefect API/UI port (0: a free one).")
    workers: int = Field(default=2, ge=0, le=32)
    worker_concurrency: int = Field(default=4, ge=1, le=64)
    worker_poll: float = Field(default=0.5, gt=0)
    worker_grace: float = Field(default=WORKER_GRACE, ge=0, description="A worker's --grace: seconds its runs "
                                "get to finish after `down` before they are marked Crashed and handed over.")
    lease_ttl: float = Field(default=10.0, gt=0)
    lease_renew: float = Field(default=2.0, gt=0)
    slack: bool = Field(default=True, description="Start the Slack app (HTTP, deployment launcher).")
    slack_port: int = Field(default=3000, ge=0, le=65535)
    sandbox: bool = Field(default=True, description="Start the sandbox and point every process at it.")
    store: str | None = Field(default=None, description="STANCH_STORE for every process (default: "
                              "$STANCH_STORE, else the PostgreSQL store in the stanch database).")
    extra_env: dict[str, str] = Field(default_factory=dict, description="More environment for every process.")
    start_timeout: float = Field(default=120.0, gt=0)


class ClusterState(BaseModel):
    """Contents of ``<home>/cluster/cluster.json``."""

    model_config = ConfigDict(extra="forbid")

    home: Path
    prefect_api_url: str
    prefect_ui_url: str
    prefect_database_url: str
    leases_url: str
    store: str
    slack_url: str | None = None
    timeline_key_file: str | None = None  # the signing key handed to every process (a path, never the key)
    timeline_pubkey: str | None = None  # its public half (base64 of the raw key): what clients trust
    pids: dict[str, int] = Field(default_factory=dict)  # name -> pid, in start order
    logs: Path
    started_at: datetime
    worker_grace: float = WORKER_GRACE  # the workers' --grace: `down` waits this + STOP_MARGIN before SIGKILL
    sandbox_started: bool = True  # False: the sandbox was up before the cluster, `down` leaves it running

    def environment(self) -> dict[str, str]:
        """What a client process (CLI, run_deployment, `stanch approve`, `stanch timeline verify`)
        needs to reach this cluster and trust the records its workers sign."""
        env = {"PREFECT_API_URL": self.prefect_api_url, "STANCH_STORE": self.store,
               "STANCH_WORKER_LEASES": self.leases_url}
        if self.timeline_pubkey:
            env["STANCH_TIMELINE_PUBKEYS"] = self.timeline_pubkey
        return env


def cluster_dir(home: Path) -> Path:
    return Path(home).resolve() / "cluster"


def read_state(home: Path) -> ClusterState | None:
    path = cluster_dir(home) / STATE_FILE
    try:
        return ClusterState.model_validate_json(path.read_text())
    except FileNotFoundError:
        return None


def shown(url: str) -> str:
    """``url`` fit to print: a ``postgresql…://user:password@…`` URL without its password (as ``stanch
    store migrate`` shows it); anything else (a folder, an http URL) unchanged."""
    if not url.startswith("postgresql"):
        return url
    from flows.store.postgres import PostgresStore

    return PostgresStore(url).display


def database_url(server: str, database: str) -> str:
    parts = urlsplit(server)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


def ensure_database(server: str, database: str) -> bool:
    """Create ``database`` on ``server`` unless it exists; True if it was created."""
    with psycopg.connect(database_url(server, "postgres"), autocommit=True, connect_timeout=5) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
            return False
        with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # a concurrent `up`
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        return True


def drop_database(server: str, database: str) -> None:
    with psycopg.connect(database_url(server, "postgres"), autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))


def postgres_reachable(server: str) -> str | None:
    """None if ``server`` accepts a connection, else why not (one line)."""
    try:
        with psycopg.connect(database_url(server, "postgres"), connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(name: str, argv: list[str], env: dict[str, str], logs: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with open(logs / f"{name}.log", "ab") as log:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=str(cwd), start_new_session=True, close_fds=True)


def _wait(what: str, ready: Any, proc: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise ConfigurationError(f"{what} exited with status {proc.returncode} during start-up:\n{tail}")
        if ready():
            return
        time.sleep(0.2)
    raise ConfigurationError(f"{what} did not become ready in time (log: {log})")


def _healthy(api_url: str) -> bool:
    try:
        return _http.request("GET", f"{api_url}/health").status == 200
    except urllib3.exceptions.HTTPError:
        return False


def _says(log: Path, text: str) -> bool:
    try:
        return text in log.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return False


def _listening(url: str) -> bool:
    try:
        _http.request("GET", url)
        return True
    except urllib3.exceptions.HTTPError:
        return False


def base_environment(config: ClusterConfig) -> dict[str, str]:
    env = {**os.environ, **config.extra_env}
    repo_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo_root, env.get("PYTHONPATH")) if p)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("DO_NOT_TRACK", "1")
    env.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    env.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
    return env


def up(config: ClusterConfig) -> ClusterState:
    """Start the cluster described by ``config`` (refused if one is already up for this home)."""
    home = Path(config.home).resolve()
    cdir = cluster_dir(home)
    current = read_state(home)
    if current is not None and any(process_alive(pid) for pid in current.pids.values()):
        raise ConfigurationError(f"a cluster is already up for {home} (Prefect {current.prefect_api_url}); "
                                 "`stanch cluster down` first")
    if urlsplit(config.postgres).path.strip("/"):
        raise ConfigurationError(f"--postgres {shown(config.postgres)} names a database: give the server only "
                                 "(postgresql://user@host:port) and choose the databases with --prefect-database "
                                 f"(now {config.prefect_database}) and --leases-database "
                                 f"(now {config.stanch_database})")
    why = postgres_reachable(config.postgres)
    if why:
        raise ConfigurationError(f"PostgreSQL at {shown(config.postgres)} is not reachable: {why}")
    try:
        ensure_database(config.postgres, config.prefect_database)
        ensure_database(config.postgres, config.stanch_database)
    except psycopg.Error as exc:  # e.g. no CREATEDB right: one line, no traceback
        raise ConfigurationError(f"PostgreSQL at {shown(config.postgres)}: cannot create the databases "
                                 f"{config.prefect_database}/{config.stanch_database}: {type(exc).__name__}: "
                                 f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from None
    logs = cdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = base_environment(config)
    sandbox_started = False
    if config.sandbox:
        from integrations.sandbox import read_state as sandbox_state
        from integrations.sandbox import up as sandbox_up

        before = sandbox_state(home)
        sandbox_started = before is None or not process_alive(before.pid)  # else it is not ours to stop
        env.update(sandbox_up(home).environment())
    # the incident record in PostgreSQL (the stanch database, beside the leases) unless told otherwise
    store = config.store or env.get("STANCH_STORE") or database_url(config.postgres, config.stanch_database)
    env["STANCH_STORE"] = store
    env["STANCH_HOME"] = str(home)
    key_file, pubkey = _timeline_key(home, env)
    port = config.prefect_port or _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    pg_async = database_url(config.postgres, config.prefect_database).replace("postgresql://",
                                                                              "postgresql+asyncpg://", 1)
    leases_url = database_url(config.postgres, config.stanch_database)
    state = ClusterState(home=home, prefect_api_url=api_url, prefect_ui_url=f"http://127.0.0.1:{port}",
                         prefect_database_url=pg_async, leases_url=leases_url, store=store, logs=logs,
                         started_at=datetime.now(UTC), timeline_key_file=key_file, timeline_pubkey=pubkey,
                         worker_grace=config.worker_grace, sandbox_started=sandbox_started)
    deadline = time.monotonic() + config.start_timeout
    try:
        server_env = {**env, "PREFECT_API_DATABASE_CONNECTION_URL": pg_async,
                      "PREFECT_HOME": str(cdir / "prefect-server"), "PREFECT_UI_API_URL": api_url}
        server_env.pop("PREFECT_API_URL", None)
        server_env.pop("STANCH_TIMELINE_KEY", None)  # the Prefect server signs nothing
        server = _spawn("prefect-server", [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                           "--port", str(port), "--analytics-off"], server_env, logs, cdir)
        state.pids["prefect-server"] = server.pid
        _write(state)
        client_env = _client_env(config, state)
        started: dict[str, subprocess.Popen[bytes]] = {}
        for i in range(1, config.workers + 1):
            started[f"worker-{i}"] = _spawn_worker(state, config, f"worker-{i}", client_env)
        # the workers warm up (imports) while the server migrates its database; they retry registering
        _wait("the Prefect server", lambda: _healthy(api_url), server, logs / "prefect-server.log", deadline)
        for name, proc in started.items():  # each registers (upserts) the deployment, then says it polls
            _wait(name, lambda log=logs / f"{name}.log", n=name: _says(log, f"stanch worker {n}:"), proc,
                  logs / f"{name}.log", deadline)
        if config.slack:
            slack_port = config.slack_port or _free_port()
            slack_env = {**client_env, "STANCH_SLACK_LAUNCHER": "deployment", "PREFECT_UI_URL": state.prefect_ui_url}
            if not slack_env.get("STANCH_SLACK_SIGNING_SECRET"):  # local stand-in only: a throwaway secret
                secret_file = cdir / "slack-signing-secret"
                if not secret_file.exists():
                    secret_file.touch(mode=0o600)
                    secret_file.write_text(secrets.token_hex(16))
                slack_env["STANCH_SLACK_SIGNING_SECRET"] = secret_file.read_text().strip()
            proc = _spawn("slack-app", [sys.executable, "-m", "flows.entrypoints.cli", "slack", "serve",
                                        "--host", "127.0.0.1", "--port", str(slack_port)], slack_env, logs, cdir)
            state.pids["slack-app"] = proc.pid
            state.slack_url = f"http://127.0.0.1:{slack_port}/slack/events"
            _write(state)
            _wait("the Slack app", lambda: _listening(f"http://127.0.0.1:{slack_port}/"), proc,
                  logs / "slack-app.log", deadline)
    except BaseException:
        down(home, sandbox=False)
        if sandbox_started:  # stopped here: `down` stops only what a state file records
            from integrations.sandbox import down as sandbox_down

            sandbox_down(home)
        raise
    return state


def _timeline_key(home: Path, env: dict[str, str]) -> tuple[str | None, str]:
    """(key file handed to every process, its public half): STANCH_TIMELINE_KEY as given (no file
    of ours: it reaches the processes through their environment), else the cluster home's
    installation key, created if missing."""
    from flows.engine.timeline_keys import INSTALLATION_KEY, ensure_installation_key, load_private, public_text

    if env.get("STANCH_TIMELINE_KEY"):
        return None, public_text(load_private(env["STANCH_TIMELINE_KEY"]).public_key())
    path = home / INSTALLATION_KEY
    return str(path), public_text(ensure_installation_key(path).public_key())


def _client_env(config: ClusterConfig, state: ClusterState) -> dict[str, str]:
    env = base_environment(config)
    if state.timeline_key_file and not env.get("STANCH_TIMELINE_KEY"):
        env["STANCH_TIMELINE_KEY"] = state.timeline_key_file  # every worker and the Slack app sign with it
    if config.sandbox:
        from integrations.sandbox import read_state as sandbox_state

        sb = sandbox_state(state.home)
        if sb is not None:
            env.update(sb.environment())
    return {**env, **state.environment(), "STANCH_HOME": str(state.home),
            "PREFECT_HOME": str(cluster_dir(state.home) / "prefect-client")}


def worker_argv(state: ClusterState, config: ClusterConfig, name: str) -> list[str]:
    """A cluster worker's command line. The lease database comes from its environment
    (``STANCH_WORKER_LEASES``): a password on a command line is readable by every local user."""
    return [sys.executable, "-m", "flows.entrypoints.worker", "--worker-name", name,
            "--max-concurrent", str(config.worker_concurrency), "--poll", str(config.worker_poll),
            "--grace", str(state.worker_grace), "--lease-ttl", str(config.lease_ttl),
            "--renew", str(config.lease_renew)]


def _spawn_worker(state: ClusterState, config: ClusterConfig, name: str,
                  env: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {**env, "STANCH_WORKER_LEASES": state.leases_url}
    proc = _spawn(name, worker_argv(state, config, name), env, state.logs, cluster_dir(state.home))
    state.pids[name] = proc.pid
    _write(state)
    return proc


def add_worker(state: ClusterState, config: ClusterConfig, name: str) -> int:
    """Start one more worker for a running cluster (benchmarks: scale 1 -> 2); its pid."""
    if name in state.pids:
        raise ConfigurationError(f"a process named {name} is already part of the cluster")
    proc = _spawn_worker(state, config, name, _client_env(config, state))
    _wait(name, lambda: _says(state.logs / f"{name}.log", f"stanch worker {name}:"), proc,
          state.logs / f"{name}.log", time.monotonic() + config.start_timeout)
    return proc.pid


def _write(state: ClusterState) -> None:
    """``cluster.json``, mode 0600 from its first byte (its URLs may carry a password), replaced atomically."""
    path = cluster_dir(state.home) / STATE_FILE
    tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(state.model_dump_json(indent=2))
    tmp.replace(path)


def _ours(pid: int) -> bool:
    """Guard against a recycled pid: the process must be one ``up`` starts."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return process_alive(pid)
    return any(m in cmdline for m in (b"prefect\0server", b"flows.entrypoints.worker", b"flows.entrypoints.cli"))


def stop_process(pid: int, *, timeout: float, sig: int = signal.SIGTERM) -> None:
    """``sig`` to ``pid``'s process group, then SIGKILL after ``timeout`` s (only a process ``up`` started)."""
    stop_processes([pid], timeout=timeout, sig=sig)


def stop_processes(pids: list[int], *, timeout: float, sig: int = signal.SIGTERM) -> None:
    """``sig`` to every one's process group at once (one signal each: a worker's second one cuts its
    grace short), then SIGKILL to those still alive ``timeout`` s later (only processes ``up`` started)."""
    mine = [pid for pid in pids if process_alive(pid) and _ours(pid)]
    for pid in mine:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
    deadline = time.monotonic() + timeout
    while any(process_alive(pid) for pid in mine) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in mine:
        if process_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    while any(process_alive(pid) for pid in mine) and time.monotonic() < deadline + 5:
        time.sleep(0.05)


def worker_stop_timeout(state: ClusterState) -> float:
    """How long ``down`` waits for a worker before SIGKILL: its grace plus ``STOP_MARGIN``, so a
    worker always gets to mark its leftover runs Crashed and hand them over."""
    return state.worker_grace + STOP_MARGIN


def down(home: Path, *, sandbox: bool = True, worker_grace: float | None = None) -> bool:
    """Stop everything ``up`` started for ``home`` — the Slack app (and anything else) newest first,
    then every worker at once (all stopping: none takes over another's runs; they hand them over
    together, through their expired leases, to the next workers), then the Prefect server (which the
    stopping workers need) — then the sandbox if the cluster started it (and ``sandbox``); True if
    something was running. No cluster state: nothing is touched (a sandbox of ``stanch sandbox up``
    stays up). ``worker_grace``: seconds to wait for the workers before SIGKILL (default
    ``worker_stop_timeout``)."""
    home = Path(home).resolve()
    state = read_state(home)
    if state is None:
        return False
    newest_first = list(reversed(state.pids.items()))
    running = any(process_alive(pid) for _, pid in newest_first)
    workers = [pid for name, pid in newest_first if name.startswith("worker")]
    for name, pid in newest_first:
        if not name.startswith("worker") and name != "prefect-server":
            stop_process(pid, timeout=10.0)
    # workers: SIGINT is what Prefect's own workers need; ours treat SIGTERM/SIGINT alike
    stop_processes(workers, timeout=worker_stop_timeout(state) if worker_grace is None else worker_grace,
                   sig=signal.SIGINT)
    if "prefect-server" in state.pids:
        stop_process(state.pids["prefect-server"], timeout=10.0)
    (cluster_dir(home) / STATE_FILE).unlink(missing_ok=True)
    if sandbox and state.sandbox_started:
        from integrations.sandbox import down as sandbox_down

        running = sandbox_down(home) or running
    return running


def status(home: Path) -> dict[str, Any]:
    """The state file plus, per process, whether it is alive (and the server's health); URLs
    without passwords."""
    state = read_state(home)
    if state is None:
        return {"up": False}
    procs = {name: {"pid": pid, "alive": process_alive(pid)} for name, pid in state.pids.items()}
    return {"up": any(p["alive"] for p in procs.values()), "prefect_ui": state.prefect_ui_url,
            "prefect_api": state.prefect_api_url, "healthy": _healthy(state.prefect_api_url),
            "store": shown(state.store), "leases": shown(state.leases_url), "slack": state.slack_url,
            "processes": procs, "logs": str(state.logs)}
