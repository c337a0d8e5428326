"""`stanch demo | cat` at 80 columns (issue 13): a plain line says what the wait for the Prefect
server is, ids, paths and commands are never wrapped onto the next line, and where the record is
(incident folder, post-mortem, verify command) is said once, at the end. Runs the real demo: a
private sandbox and the flagship runbook, read back from moto by the demo itself."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest
from rich.console import Console

from flows.entrypoints.demo import run_demo
from integrations.aws.session import clear_client_cache


@pytest.mark.usefixtures("prefect_server")
def test_demo_piped_at_80_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STANCH_HOME", str(tmp_path))
    saved = dict(os.environ)  # the demo points this process's settings at its sandbox
    console = Console(width=80, file=io.StringIO(), highlight=False)  # piped: not a terminal
    from flows.entrypoints import terminal

    monkeypatch.setattr(terminal, "console", console)
    try:
        assert run_demo(console) == 0
    finally:
        os.environ.clear()
        os.environ.update(saved)
        clear_client_cache()
    text = console.file.getvalue()  # type: ignore[attr-defined]
    lines = text.splitlines()
    assert "starting a local Prefect server…" in lines or "starting the run…" in lines
    folder = next(ln.split(": ", 1)[1].strip() for ln in lines if ln.startswith("incident folder:"))
    for said_once in ("incident folder:", "post-mortem:", "verify:"):
        assert sum(ln.startswith(said_once) for ln in lines) == 1, said_once
    assert lines[-3:-1] == [f"incident folder: {folder}", f"post-mortem:     {folder}/postmortem.md"]
    # the whole command on one line, with the STANCH_HOME whose installation key signed the record
    # (tests/e2e/test_compromised_dependency.py runs that command and expects exit 0)
    assert lines[-1].startswith("verify:          STANCH_HOME=") and lines[-1].endswith(f" timeline verify {folder}")
    assert any(ln.startswith("incident INC-") and ln.endswith("compromised-dependency.yaml · DRILL (sandbox only)")
               for ln in lines)
    keys = re.findall(r"AKIA[0-9A-Z]{16}", text)
    assert keys
    desktop = next(ln for ln in lines if ln.startswith("  desktop-app ") and "CI keys:" in ln)
    assert desktop.count(" Inactive") == 2  # both keys and their state on one line
    for ln in lines:  # nothing was wrapped: no line is the tail of an id, a path or a state
        assert not re.match(r"^(Inactive|Active|/|[A-Z0-9]{20}\b)", ln), ln
    stamps = [m.group(1) for m in re.finditer(r"^  (\d\d:\d\d:\d\d\.\d{3})  ", text, re.M)]
    assert len(stamps) > 10 and stamps == sorted(stamps)
