"""Run the hostile settings corpus (tests/hostile/settings/*.json; format in its README): a bad
STANCH_* variable gives one line naming it and exit 2 — no traceback, never the value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.entrypoints.cli import app

CASES = sorted((Path(__file__).parent / "settings").glob("*.json"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_hostile_setting_is_one_clear_line(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = json.loads(path.read_text(encoding="utf-8"))
    env = {"STANCH_HOME": str(tmp_path / "home"), **case["env"]}
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(app, ["incidents"], env=env)
    assert not list(cwd.iterdir()), "a bad setting created something in the working directory"
    out = result.output
    assert result.exit_code == 2, out
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in out and "pydantic" not in out
    (line,) = [ln for ln in out.splitlines() if ln.strip()]
    assert line.startswith("error: bad setting: ")
    for name in case["must_name"]:
        assert name in line
    for needle in case.get("must_not_contain", []):
        assert needle not in out
