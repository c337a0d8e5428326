"""The sandbox as a whole: moto + fault injector + seeded fleet (+ an optional Slack stand-in).

Owns: ``Sandbox`` (in-process context manager), ``SandboxState`` (``<home>/sandbox.json``, how
other processes find a running sandbox), ``is_sandbox_endpoint`` (the drill-safety test: loopback
only), and the process lifecycle behind ``stanch sandbox up|down``: ``up`` spawns
``python -m integrations.sandbox serve --home HOME`` detached and waits until it answers,
``down`` stops it by pid (SIGTERM) and removes the state file, ``serve`` runs in the foreground
until SIGTERM/SIGINT.

Slack: ``serve`` (and so ``up``) also starts the Slack Web API stand-in
(``integrations.sandbox.slack_standin``); ``SandboxState.slack_url`` is its API base URL (what
``STANCH_SLACK_BASE_URL`` wants). In-process ``Sandbox`` starts Slack only when given a
``slack_factory``: a callable returning a *started* object with ``url`` (and optionally
``api_url``) and ``stop()``. ``serve`` accepts another one as ``module:callable``
(``--slack-factory`` / ``STANCH_SANDBOX_SLACK_FACTORY``; ``none`` disables Slack).

Must not touch: ``flows``, ``prefect``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Protocol

import urllib3
from pydantic import BaseModel, ConfigDict, Field

from integrations.aws.session import clear_client_cache, is_loopback_endpoint
from integrations.errors import ConfigurationError
from integrations.sandbox.fleet import SandboxFleet, seed_fleet
from integrations.sandbox.moto_server import MotoServer

__all__ = [
    "STATE_FILE",
    "Sandbox",
    "SandboxState",
    "SlackService",
    "default_slack_factory",
    "down",
    "is_sandbox_endpoint",
    "load_state",
    "read_state",
    "serve",
    "up",
]

STATE_FILE = "sandbox.json"
LOG_FILE = "sandbox.log"
_http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1, read=5))


def is_sandbox_endpoint(url: str | None) -> bool:
    """True only for loopback URLs (127.0.0.0/8, ::1, localhost): what drills may talk to."""
    return is_loopback_endpoint(url)


class SlackService(Protocol):
    @property
    def url(self) -> str: ...

    def stop(self) -> None: ...


class SandboxState(BaseModel):
    """Contents of ``<home>/sandbox.json``."""

    model_config = ConfigDict(extra="forbid")

    moto_url: str
    slack_url: str | None = None
    pid: int
    home: Path
    workdir: Path
    inventory_path: Path
    fleet_path: Path | None = None
    started_at: datetime

    slack_token: str | None = Field(default=None, description="The stand-in's fake bot token (not a secret)")

    @property
    def inventory(self) -> Path:
        return self.inventory_path

    def environment(self) -> dict[str, str]:
        """Environment for a process that should use this sandbox (CLI, engine, drills)."""
        env = {
            "STANCH_AWS_ENDPOINT_URL": self.moto_url,
            "STANCH_INVENTORY": str(self.inventory_path),
            "AWS_ACCESS_KEY_ID": "sandbox",
            "AWS_SECRET_ACCESS_KEY": "sandbox",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        if self.slack_url:
            env["STANCH_SLACK_BASE_URL"] = self.slack_url
        if self.slack_token:
            env["STANCH_SLACK_TOKEN"] = self.slack_token
        return env

    def env(self) -> dict[str, str]:
        return self.environment()


def state_path(home: str | Path) -> Path:
    return Path(home) / STATE_FILE


def load_state(home: str | Path) -> SandboxState:
    """The state of the sandbox running for ``home``; ConfigurationError if there is none."""
    state = read_state(home)
    if state is None:
        raise ConfigurationError(f"no sandbox running for {home} (start one with `stanch sandbox up`)")
    return state


def read_state(home: str | Path) -> SandboxState | None:
    path = state_path(home)
    try:
        return SandboxState.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise ConfigurationError(f"{path}: unreadable sandbox state: {exc}") from None


def _write_state(state: SandboxState) -> None:
    path = state_path(state.home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(state.model_dump_json(indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


class Sandbox:
    """``with Sandbox(home) as sb: sb.url, sb.fleet`` — a private, seeded sandbox in this process.

    ``home`` defaults to a temporary directory (removed on exit); the fleet's files go to
    ``<home>/fleet``. ``write_state=True`` also writes ``<home>/sandbox.json``.
    """

    def __init__(
        self,
        home: str | Path | None = None,
        *,
        seed: bool = True,
        slack_factory: Callable[[], SlackService] | None = None,
        write_state: bool = False,
        fleet_variant: str = "default",
    ) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if home is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="stanch-sandbox-")
            home = self._tmp.name
        self.home = Path(home).resolve()
        self.seed = seed
        self.slack_factory = slack_factory
        self.write_state = write_state
        self.fleet_variant = fleet_variant
        self.moto = MotoServer()
        self.slack: SlackService | None = None
        self.fleet: SandboxFleet | None = None
        self.state: SandboxState | None = None

    @property
    def url(self) -> str:
        return self.moto.url

    @property
    def slack_url(self) -> str | None:
        if self.slack is None:
            return None
        return str(getattr(self.slack, "api_url", None) or self.slack.url)

    def start(self) -> Sandbox:
        self.home.mkdir(parents=True, exist_ok=True)
        self.moto.start()
        try:
            workdir = self.home / "fleet"
            # moto's backends are process-global: a new sandbox starts from an empty AWS.
            self.moto.reset()
            if self.seed:
                self.fleet = seed_fleet(self.moto.url, workdir, self.fleet_variant)
                (self.home / "fleet.json").write_text(self.fleet.model_dump_json(indent=2), encoding="utf-8")
            if self.slack_factory is not None:
                self.slack = self.slack_factory()
            self.state = SandboxState(
                moto_url=self.moto.url,
                slack_url=self.slack_url,
                slack_token=getattr(self.slack, "token", None) if self.slack is not None else None,
                pid=os.getpid(),
                home=self.home,
                workdir=workdir,
                inventory_path=workdir / "inventory.yaml",
                fleet_path=(self.home / "fleet.json") if self.seed else None,
                started_at=datetime.now(UTC),
            )
            if self.write_state:
                _write_state(self.state)
        except BaseException:
            self.stop()
            raise
        return self

    def reseed(self) -> SandboxFleet:
        """Wipe all AWS state and fault rules, then seed the fleet again."""
        self.moto.reset()
        clear_client_cache()
        self.fleet = seed_fleet(self.moto.url, self.home / "fleet", self.fleet_variant)
        return self.fleet

    def stop(self) -> None:
        if self.slack is not None:
            with contextlib.suppress(Exception):
                self.slack.stop()
            self.slack = None
        self.moto.stop()
        if self.write_state:
            current = read_state(self.home) if state_path(self.home).exists() else None
            if current is not None and current.pid == os.getpid():
                state_path(self.home).unlink(missing_ok=True)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# stanch sandbox up | down | serve


def default_slack_factory() -> SlackService:
    """Start the Slack Web API stand-in (token: its sandbox default)."""
    from integrations.sandbox.slack_standin import DEFAULT_TOKEN, SlackStandIn

    return SlackStandIn(DEFAULT_TOKEN).start()


def load_factory(spec: str | None) -> Callable[[], SlackService] | None:
    """``"package.module:callable"`` -> the callable; None/"" -> default stand-in; "none" -> no Slack."""
    if not spec:
        return default_slack_factory
    if spec.lower() == "none":
        return None
    module, _, attr = spec.partition(":")
    if not attr:
        raise ConfigurationError(f"slack factory must be 'module:callable', got {spec!r}")
    factory: Callable[[], SlackService] = getattr(importlib.import_module(module), attr)
    return factory


def serve(home: str | Path, slack: str | None = None, fleet_variant: str = "default") -> None:
    """Run the sandbox in the foreground until SIGTERM/SIGINT (or, with
    ``STANCH_SANDBOX_EXIT_WITH_PARENT=1``, until the process that started it is gone);
    writes/removes ``sandbox.json``.

    ``slack``: ``module:callable`` of a Slack stand-in factory, ``"none"`` for no Slack, or None
    for ``$STANCH_SANDBOX_SLACK_FACTORY`` / the built-in stand-in. ``fleet_variant``: see ``fleet``.
    """
    slack_factory = load_factory(slack or os.environ.get("STANCH_SANDBOX_SLACK_FACTORY"))
    stop = threading.Event()
    # a drill's sandbox (STANCH_SANDBOX_EXIT_WITH_PARENT=1) stops when the drill that started it is
    # gone (killed, or cut off by a worker shutdown): it never outlives its drill; `stanch sandbox up`
    # is meant to outlive its CLI and does not set it
    parent = os.getppid() if os.environ.get("STANCH_SANDBOX_EXIT_WITH_PARENT") == "1" else None

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with Sandbox(home, slack_factory=slack_factory, write_state=True, fleet_variant=fleet_variant) as sb:
            print(f"stanch sandbox: moto at {sb.url}; state in {state_path(sb.home)}", flush=True)
            while not stop.wait(0.5):
                if parent is not None and os.getppid() != parent:
                    break
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _answers(url: str) -> bool:
    try:
        return _http.request("GET", f"{url.rstrip('/')}/_fault").status == 200
    except urllib3.exceptions.HTTPError:
        return False


def process_alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)  # reap our own child if it has exited
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_our_server(pid: int) -> bool:
    """Guard against a recycled pid: the process must be an ``integrations.sandbox serve``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return process_alive(pid)  # no /proc (macOS): trust the state file
    return b"integrations.sandbox" in cmdline and b"serve" in cmdline


def up(home: str | Path, detach: bool = True, timeout: float = 60.0) -> SandboxState:
    """Start the sandbox for ``home`` (no-op if one is already running there) and return its state."""
    home_p = Path(home).resolve()
    current = read_state(home_p)
    if current is not None:
        if process_alive(current.pid) and _is_our_server(current.pid) and _answers(current.moto_url):
            return current
        state_path(home_p).unlink(missing_ok=True)  # stale
    if not detach:
        serve(home_p)
        raise ConfigurationError("sandbox stopped")
    home_p.mkdir(parents=True, exist_ok=True)
    repo_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo_root, env.get("PYTHONPATH")) if p)
    log_path = home_p / LOG_FILE
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "integrations.sandbox", "serve", "--home", str(home_p)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(home_p),
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise ConfigurationError(f"sandbox exited with status {proc.returncode} during start-up:\n{tail}")
        state = read_state(home_p)
        if state is not None and state.pid == proc.pid and _answers(state.moto_url):
            return state
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    raise ConfigurationError(f"sandbox did not start within {timeout:.0f}s (log: {log_path})")


def down(home: str | Path, timeout: float = 10.0) -> bool:
    """Stop the sandbox of ``home``; True if one was running. Always removes the state file."""
    home_p = Path(home).resolve()
    state = read_state(home_p)
    if state is None:
        return False
    was_running = process_alive(state.pid) and _is_our_server(state.pid)
    if was_running:
        os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process_alive(state.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process_alive(state.pid):
            os.kill(state.pid, signal.SIGKILL)
    state_path(home_p).unlink(missing_ok=True)
    return was_running
