"""`make demo` prints what stanch prints, not make's echo of the command first (issue 13)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")
def test_make_demo_does_not_echo_its_recipe() -> None:
    # UV=echo stands in for uv, and -o install skips the install step: what make itself prints is left
    done = subprocess.run(["make", "--no-print-directory", "-o", "install", "demo", "UV=echo"], cwd=REPO,
                          capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout.splitlines() == ["run --frozen --no-sync stanch demo"], done.stdout
