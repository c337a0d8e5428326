"""`stanch resume` / `rollback` with secret inputs (issue 8): the incident keeps only a marker,
so they must be given the value again or refuse (exit 2, naming the input, nothing changed) —
never run with ``"[redacted]"`` as the value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.entrypoints.cli import app

HERE = Path(__file__).parent / "runbooks"
SECRET = "tok-61c9e2-never-written"
pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STANCH_HOME", str(tmp_path))
    monkeypatch.delenv("STANCH_SECRET_TOKEN", raising=False)
    return tmp_path / "incidents"


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_resume_without_a_secret_input_refuses_naming_it(home: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["run", str(HERE / "secret.yaml"), "-i", f"token={SECRET}", "--incident-id", "INC-RS"])
    assert first.exit_code == 1, first.output  # the runbook's second step fails on purpose
    folder = home / "INC-RS"
    before = _files(folder)
    assert json.loads(before["incident.json"])["inputs"] == {"token": {"$secret_ref": "token"}}

    refused = runner.invoke(app, ["resume", "INC-RS"])
    assert refused.exit_code == 2, refused.output
    assert "secret input 'token'" in refused.output and "-i token=" in refused.output
    assert _files(folder) == before  # nothing changed

    again = runner.invoke(app, ["resume", "INC-RS", "-i", f"token={SECRET}"])
    assert again.exit_code == 1, again.output  # ran (and failed on purpose again)
    events = [json.loads(x) for x in (folder / "timeline.jsonl").open()]
    assert [e["kind"] for e in events].count("run.resumed") == 1
    fail = [e for e in events if e["kind"] == "step.failed" and e["step"] == "fail"][-1]
    assert fail["data"]["error"] == "webhook rejected token [redacted]"  # the value, masked where written
    for name, data in _files(folder).items():
        assert SECRET.encode() not in data, name


def test_rollback_needs_the_secret_a_compensation_uses(home: Path) -> None:
    runner = CliRunner()
    ran = runner.invoke(app, ["run", str(HERE / "secret-undo.yaml"), "-i", f"token={SECRET}",
                              "--incident-id", "INC-RBS"])
    assert ran.exit_code == 0, ran.output
    folder = home / "INC-RBS"
    events = [json.loads(x) for x in (folder / "timeline.jsonl").open()]
    comp = next(e for e in events if e["kind"] == "step.succeeded" and e["step"] == "register")["data"]["compensation"]
    assert comp[0]["with"] == {"message": {"$secret_ref": "token"}}  # a reference, not "[redacted]"
    before = _files(folder)

    refused = runner.invoke(app, ["rollback", "INC-RBS"])
    assert refused.exit_code == 2, refused.output
    assert "needs secret input 'token'" in refused.output
    assert _files(folder) == before

    done = runner.invoke(app, ["rollback", "INC-RBS", "-i", f"token={SECRET}"])
    assert done.exit_code == 0, done.output
    events = [json.loads(x) for x in (folder / "timeline.jsonl").open()]
    undone = [e for e in events if e["kind"] == "compensation.succeeded"]
    assert len(undone) == 1 and undone[0]["data"]["output"]["message"] == "[redacted]"  # got the value; masked
    for name, data in _files(folder).items():
        assert SECRET.encode() not in data, name


def test_plan_never_prints_a_secret_input(home: Path) -> None:
    for extra in ([], ["--json"]):
        shown = CliRunner().invoke(app, ["plan", str(HERE / "secret.yaml"), "-i", f"token={SECRET}", *extra])
        assert SECRET not in shown.output and "[redacted]" in shown.output, shown.output
