"""The runner's control loop without a sandbox, a run process or Prefect (fakes for each): one
resume per scenario kill; a run stopped by SIGINT/SIGTERM or a Ctrl-C in the drill is never
resumed, leaves no scorecard and no ``.drills/<INC>`` folder; a Prefect artifact failure is one
line, not a traceback; ``stanch drill run`` reports an interruption in one line, exit 130."""

from __future__ import annotations

import os
import signal
import types
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flows.drills import runner
from flows.drills.runner import after_exit
from flows.drills.scenario import REPO_DRILLS

SCENARIO = REPO_DRILLS / "killed-mid-fanout.yaml"
TIMELINE = [{"kind": "run.started", "ts": "2026-12-06T10:00:00+00:00", "step": None},
            {"kind": "run.finished", "ts": "2026-12-06T10:00:05+00:00", "step": None,
             "data": {"outcome": "succeeded"}}]


class _Sandbox:
    def __init__(self, home: Path, *_: Any) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.state = types.SimpleNamespace(environment=dict, inventory_path=home / "inventory.yaml",
                                           slack_url=None, slack_token=None)
        self.moto_url, self.slack_root = "http://127.0.0.1:1", None

    def __enter__(self) -> _Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def fleet(self) -> dict[str, Any]:
        return {}


class _Proc:
    """A run process that has exited with ``code`` (``None``: still running, until killed)."""

    def __init__(self, code: int | None) -> None:
        self.code, self.pid, self.killed = code, 4242, False

    def poll(self) -> int | None:
        return self.code

    def kill(self) -> None:
        self.killed, self.code = True, -signal.SIGKILL

    def wait(self) -> int | None:
        return self.code


class _Injector:
    """A kill point that fired once, read back on the next ``kill_points_fired``."""

    def __init__(self, *_: Any, **__: Any) -> None:
        self.pending = 1

    def prepare(self) -> None:
        pass

    def tick(self, *_: Any) -> bool:
        return False

    def kill_points_fired(self) -> int:
        fired, self.pending = self.pending, 0
        return fired

    def finish(self, run_succeeded: bool) -> list[Any]:
        return []


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    started: dict[str, Any] = {"commands": [], "procs": [], "exits": []}

    def popen(cmd: list[str], **_: Any) -> _Proc:
        started["commands"].append(cmd[3])  # "run" or "resume"
        proc = _Proc(started["exits"].pop(0))
        started["procs"].append(proc)
        return proc

    monkeypatch.setattr(runner, "DrillSandbox", _Sandbox)
    monkeypatch.setattr(runner, "Injector", _Injector)
    monkeypatch.setattr(runner, "install", lambda *_: [])
    monkeypatch.setattr(runner, "_run_probes", lambda *_: [])
    monkeypatch.setattr(runner, "_prefect_api_url", lambda: "http://127.0.0.1:1/api")
    monkeypatch.setattr(runner, "_post_to_slack", lambda *_: (False, "no Slack here"))
    monkeypatch.setattr(runner, "_events", lambda *_: TIMELINE)
    monkeypatch.setattr(runner.subprocess, "Popen", popen)
    return started


def test_after_exit() -> None:
    assert after_exit(-signal.SIGKILL, scenario_kills=1, resumes=0) == "resume"
    assert after_exit(0, scenario_kills=0, resumes=1) == "done"
    assert after_exit(-signal.SIGKILL, scenario_kills=0, resumes=0) == "done"  # not the scenario's kill
    assert after_exit(-signal.SIGKILL, scenario_kills=1, resumes=3) == "done"  # at most 3 resumes
    for code in (-signal.SIGINT, -signal.SIGTERM, 130, 143):  # stopped from outside: never resumed
        assert after_exit(code, scenario_kills=1, resumes=0) == "interrupted"


def test_one_resume_per_kill(fakes: dict[str, Any], tmp_path: Path) -> None:
    """The run dies on the kill point (-9), the resume succeeds (0): exactly one resume (the kill
    point is counted on the exit it caused, not again on the next clean exit)."""
    fakes["exits"] += [-signal.SIGKILL, 0, 0]
    result = runner.run_drill(SCENARIO, store=tmp_path, incident_id="INC-T1", tick=0.0)
    assert fakes["commands"] == ["run", "resume"]
    assert result.exit_code in (0, 1) and (tmp_path / "INC-T1" / "scorecard.json").is_file()
    assert not (tmp_path / ".drills" / "INC-T1").exists()


@pytest.mark.parametrize("code", [-signal.SIGINT, -signal.SIGTERM, 130])
def test_a_run_stopped_from_outside_is_not_resumed(fakes: dict[str, Any], tmp_path: Path, code: int) -> None:
    """Ctrl-C to the process group: the run exits on SIGINT although a kill point had fired: the
    drill is interrupted — no resume, no scorecard, no .drills folder, exit 130."""
    fakes["exits"] += [code]
    result = runner.run_drill(SCENARIO, store=tmp_path, incident_id="INC-T2", tick=0.0)
    assert fakes["commands"] == ["run"]
    assert result.exit_code == 130 and result.scorecard is None and "SIG" in result.interrupted
    assert not (tmp_path / "INC-T2" / "scorecard.json").exists()
    assert not (tmp_path / ".drills" / "INC-T2").exists()


def test_ctrl_c_in_the_drill_kills_the_run(fakes: dict[str, Any], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    fakes["exits"] += [None]  # still running when Ctrl-C arrives

    def interrupted(_: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner.time, "sleep", interrupted)
    told: list[str] = []  # `stanch drill run` exits from here when the Prefect API went away too
    monkeypatch.setattr(runner, "on_interrupted", [told.append])
    result = runner.run_drill(SCENARIO, store=tmp_path, incident_id="INC-T3", tick=0.0)
    assert told == [result.interrupted]
    assert result.exit_code == 130 and result.interrupted.startswith("SIGINT (Ctrl-C)")
    assert fakes["procs"][0].killed and fakes["commands"] == ["run"]
    assert not (tmp_path / "INC-T3" / "scorecard.json").exists() and not (tmp_path / ".drills" / "INC-T3").exists()


def test_an_artifact_failure_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import prefect.artifacts
    import prefect.context

    def refused(**_: Any) -> None:
        raise ConnectionError("All connection attempts failed")

    monkeypatch.setattr(prefect.context.FlowRunContext, "get", classmethod(lambda cls: object()))
    monkeypatch.setattr(prefect.artifacts, "create_markdown_artifact", refused)
    note = runner._artifact("INC-T4", "# card")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "INC-T4" in err and "scorecard.md is the record" in err and note in err
    assert "Traceback" not in err


def test_drill_run_reports_an_interruption_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A signal while the drill runs: one ``drill interrupted:`` line, exit 130, no summary."""
    from flows.entrypoints.cli import app

    def flow(**_: Any) -> dict[str, Any]:
        os.kill(os.getpid(), signal.SIGTERM)  # the CLI's handler turns it into an interruption
        raise AssertionError("not reached")

    monkeypatch.setattr(runner, "run_drill_flow", flow)
    result = CliRunner().invoke(app, ["drill", "run", "clean", "--store", str(tmp_path)])
    assert result.exit_code == 130, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1] == "drill interrupted: SIGTERM; no scorecard written", result.output
    assert "Traceback" not in result.output and "/100" not in result.output  # no summary table

    monkeypatch.setattr(runner, "run_drill_flow", lambda **_: {
        "interrupted": "the run was stopped by SIGINT (Ctrl-C); no scorecard written", "exit_code": 130,
        "scorecard": None, "folder": str(tmp_path), "incident_id": "INC-T5"})
    result = CliRunner().invoke(app, ["drill", "run", "clean", "--store", str(tmp_path)])
    assert result.exit_code == 130
    assert result.output.splitlines()[-1] == ("drill interrupted: the run was stopped by SIGINT (Ctrl-C); "
                                              "no scorecard written")
