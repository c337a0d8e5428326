"""``stanch cluster up|down|status`` at the unit level (no cluster is started): workers' grace
inside ``down``'s wait, ``down`` with no cluster, database passwords never printed nor on a
command line, ``cluster.json`` private, a ``--postgres`` URL naming a database refused."""

from __future__ import annotations

import json
import os
import socket
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flows.entrypoints import cluster
from flows.entrypoints.cli import app
from flows.entrypoints.cluster import (
    ClusterConfig,
    ClusterState,
    cluster_dir,
    read_state,
    shown,
    worker_argv,
    worker_stop_timeout,
)

SECRET = "hunter2secret"
PG = f"postgresql://postgres:{SECRET}@127.0.0.1:5432"


def _state(home: Path, **kw: Any) -> ClusterState:
    (cluster_dir(home) / "logs").mkdir(parents=True, exist_ok=True)
    return ClusterState(home=home.resolve(), prefect_api_url="http://127.0.0.1:4299/api",
                        prefect_ui_url="http://127.0.0.1:4299",
                        prefect_database_url=f"postgresql+asyncpg://postgres:{SECRET}@127.0.0.1:5432/stanch_prefect",
                        leases_url=f"{PG}/stanch", store=f"{PG}/stanch", logs=cluster_dir(home) / "logs",
                        started_at=datetime.now(UTC), **kw)


def _env(home: Path) -> dict[str, str]:
    return {"STANCH_HOME": str(home), "COLUMNS": "300", "STANCH_STORE": str(home / "store")}


def test_a_spawned_workers_grace_ends_before_down_kills_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`down` SIGKILLs a worker only after its --grace and a margin: the worker marks its runs
    Crashed and hands them over first (it used to keep its 60 s default against down's 30 s)."""
    config = ClusterConfig(home=tmp_path, postgres=PG)
    state = _state(tmp_path, worker_grace=config.worker_grace)
    argv = worker_argv(state, config, "worker-1")
    grace = float(argv[argv.index("--grace") + 1])
    assert grace == config.worker_grace and grace + 5 <= worker_stop_timeout(state)

    spawned: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr(cluster, "_spawn", lambda name, a, env, logs, cwd: spawned.append((a, env)) or
                        type("P", (), {"pid": 4242})())
    cluster._spawn_worker(state, config, "worker-1", {"PATH": os.environ.get("PATH", "")})
    (args, env), = spawned
    assert SECRET not in " ".join(args) and "--leases" not in args  # a command line is public to local users
    assert env["STANCH_WORKER_LEASES"] == state.leases_url

    stops: list[tuple[list[int], float]] = []
    monkeypatch.setattr(cluster, "stop_processes", lambda pids, *, timeout, sig: stops.append((pids, timeout)))
    monkeypatch.setattr(cluster, "process_alive", lambda pid: True)
    state.pids = {"prefect-server": 4241, "worker-1": 4242, "worker-2": 4243, "slack-app": 4244}
    cluster._write(state)
    assert cluster.down(tmp_path, sandbox=False) is True
    # the Slack app, then both workers at once (with their grace and a margin), then the server
    assert stops == [([4244], 10.0), ([4243, 4242], worker_stop_timeout(state)), ([4241], 10.0)]
    assert worker_stop_timeout(state) > grace


def test_cluster_down_without_a_cluster_leaves_a_standalone_sandbox_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import integrations.sandbox

    stopped: list[Path] = []
    monkeypatch.setattr(integrations.sandbox, "down", lambda home: stopped.append(Path(home)) or True)
    result = CliRunner().invoke(app, ["cluster", "down"], env=_env(tmp_path))
    assert result.exit_code == 0 and result.output.strip() == "no cluster is running", result.output
    assert stopped == []

    # a cluster that found the sandbox already up does not stop it either; one that started it does
    monkeypatch.setattr(cluster, "stop_processes", lambda pids, *, timeout, sig: None)
    for started in (False, True):
        cluster._write(_state(tmp_path, sandbox_started=started, pids={"prefect-server": 4243}))
        assert cluster.down(tmp_path) is started
        assert stopped == ([tmp_path.resolve()] if started else [])
        assert read_state(tmp_path) is None


def test_cluster_up_and_status_never_print_a_database_password(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert shown(f"{PG}/stanch") == "postgresql://postgres@127.0.0.1:5432/stanch"
    assert shown(str(tmp_path)) == str(tmp_path) and shown("http://127.0.0.1:4200/api") == "http://127.0.0.1:4200/api"
    state = _state(tmp_path, slack_url="http://127.0.0.1:3999/slack/events", timeline_pubkey="cHVi")
    monkeypatch.setattr(cluster, "up", lambda config: state)
    result = CliRunner().invoke(app, ["cluster", "up", "--postgres", PG], env=_env(tmp_path))
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    assert "STANCH_STORE=postgresql://postgres@127.0.0.1:5432/stanch" in result.output
    assert "STANCH_WORKER_LEASES=postgresql://postgres@127.0.0.1:5432/stanch" in result.output

    cluster._write(state)  # private from its first byte, replaced atomically
    path = cluster_dir(tmp_path) / "cluster.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir() if p.is_file()] == ["cluster.json"]
    assert read_state(tmp_path) == state  # the processes' real URLs are kept, for `down` and clients
    monkeypatch.setattr(cluster, "_healthy", lambda url: False)
    result = CliRunner().invoke(app, ["cluster", "status"], env=_env(tmp_path))
    assert result.exit_code == 0 and SECRET not in result.output, result.output
    assert json.loads(result.output)["store"] == "postgresql://postgres@127.0.0.1:5432/stanch"


def test_an_unreachable_postgres_is_named_without_its_password(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    result = CliRunner().invoke(app, ["cluster", "up", "--postgres", f"postgresql://postgres:{SECRET}@127.0.0.1:{port}"],
                                env=_env(tmp_path))
    assert result.exit_code == 2, result.output
    assert "not reachable" in result.output and f"postgresql://postgres@127.0.0.1:{port}" in result.output
    assert SECRET not in result.output


def test_a_postgres_url_naming_a_database_is_refused(tmp_path: Path) -> None:
    """It used to be replaced silently by stanch_prefect / stanch; the databases have options."""
    result = CliRunner().invoke(app, ["cluster", "up", "--postgres", f"{PG}/somedb"], env=_env(tmp_path))
    assert result.exit_code == 2, result.output
    assert "names a database" in result.output and "--prefect-database" in result.output, result.output
    assert "--leases-database" in result.output and SECRET not in result.output
    assert not cluster_dir(tmp_path).exists()  # refused before anything started


def test_the_database_options_reach_the_cluster_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[ClusterConfig] = []

    def fake_up(config: ClusterConfig) -> ClusterState:
        seen.append(config)
        return _state(tmp_path)

    monkeypatch.setattr(cluster, "up", fake_up)
    result = CliRunner().invoke(app, ["cluster", "up", "--prefect-database", "p_db", "--leases-database", "l_db"],
                                env=_env(tmp_path))
    assert result.exit_code == 0, result.output
    assert (seen[0].prefect_database, seen[0].stanch_database) == ("p_db", "l_db")
    assert (ClusterConfig().prefect_database, ClusterConfig().stanch_database) == ("stanch_prefect", "stanch")


def test_operations_md_lists_every_cluster_up_option_and_what_up_prints(tmp_path: Path) -> None:
    import typer.main

    doc = (Path(__file__).parents[3] / "docs" / "operations.md").read_text(encoding="utf-8")
    section = doc.split("### On one machine: `stanch cluster up|down|status`", 1)[1].split("\n### ", 1)[0]
    group: Any = typer.main.get_command(app)
    up_cmd = group.commands["cluster"].commands["up"]
    options = [o for p in up_cmd.params for o in (*p.opts, *p.secondary_opts) if o not in ("--help", "--slack",
                                                                                           "--sandbox")]
    assert [o for o in options if f"`{o}" not in section] == []
    printed = section.split("`up` prints the environment a client", 1)[1].split(";", 1)[0]
    env = _state(tmp_path, timeline_pubkey="cHVi").environment()
    assert [k for k in env if f"`{k}`" not in printed] == []
