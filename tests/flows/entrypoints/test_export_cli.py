"""``stanch export``: a destination that cannot be written (OUT a file, a path under a file, a
folder that cannot be created, a disk that fills up mid-way) is one line and exit 2, with nothing
half-written left behind; the help text names the folder it writes (``<incident>`` was eaten by
rich markup: "into OUT// —")."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flows.engine.incident import Incident
from flows.entrypoints.cli import app

INC = "INC-20990101-000000-EXPT"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("STANCH_STORE", raising=False)
    monkeypatch.setenv("STANCH_HOME", str(tmp_path / "home"))
    inc = Incident(tmp_path / "home" / "incidents", INC)
    inc.write_meta({"id": INC, "runbook": "r"})
    (inc.reports_dir).mkdir(parents=True)
    inc.write_report("s1", "# step one\n")
    inc.timeline.append("run.started", data={"runbook": "r"})
    inc.timeline.close()
    return tmp_path / "home"


def _export(out: Path, home: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["export", INC, str(out)], env={"STANCH_HOME": str(home)})
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output


def _one_error_line(out: str) -> str:
    assert "Traceback" not in out and "Error:" not in out.replace("error:", "")
    (line,) = [ln for ln in out.splitlines() if ln.strip()]
    assert line.startswith("error: cannot export into "), line
    assert "nothing was written" in line
    return line


def test_out_is_a_file(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "a-file"
    out.write_text("keep me\n")
    code, text = _export(out, home)
    assert code == 2, text
    assert "it is a file" in _one_error_line(text)
    assert out.read_text() == "keep me\n"


def test_out_under_a_file_or_not_creatable(home: Path, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    for out in (tmp_path / "a-file" / "sub", Path("/proc/stanch-export-test/sub")):
        code, text = _export(out, home)
        assert code == 2, text
        _one_error_line(text)
    assert (tmp_path / "a-file").read_text() == "x"


def test_a_failure_mid_way_leaves_nothing_half_written(home: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.copytree

    def fill_up(src: Any, dst: Any, **kw: Any) -> Any:
        Path(dst).mkdir(parents=True)
        (Path(dst) / "timeline.jsonl").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copytree", fill_up)
    out = tmp_path / "new" / "deeper"
    code, text = _export(out, home)
    assert code == 2, text
    assert "No space left on device" in _one_error_line(text)
    assert not (tmp_path / "new").exists(), list((tmp_path / "new").rglob("*"))

    monkeypatch.setattr(shutil, "copytree", real)  # and then it works, into the same place
    code, text = _export(out, home)
    assert code == 0, text
    assert sorted(p.name for p in out.iterdir()) == [INC]
    assert (out / INC / "reports" / "s1.md").read_text() == "# step one\n"
    code, text = _export(out, home)  # a second export into the same place is refused, nothing changed
    assert code == 2 and "exists and is not empty" in text


def test_help_names_the_folder_it_writes() -> None:
    result = CliRunner().invoke(app, ["export", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "OUT//" not in result.output and "write / into" not in result.output
    assert "OUT/INC-…/" in result.output
