"""The hostile drill-scenario corpus: ``stanch drill run FILE`` on each file in ``drills/`` must
print exactly ``<name>.expected`` (every diagnostic once, literally — Rich markup and regex
brackets in messages intact — then one ``error:`` summary line), exit 1, and start nothing.

Runs in one child process with a memory and CPU cap, like the runbook corpus (alias bombs).
Regenerate the goldens deliberately with ``STANCH_UPDATE_GOLDEN=1`` and review the diff.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
CORPUS = HERE / "drills"
REPO = HERE.parents[1]
FILES = sorted(p.name for p in CORPUS.glob("*.yaml"))
MEMORY_LIMIT = 1024 * 1024 * 1024

_CHILD = r"""
import json, sys, tempfile
from pathlib import Path
from typer.testing import CliRunner
from flows.entrypoints.cli import app

out = {}
store = Path(tempfile.mkdtemp()) / "store"
for name in sys.argv[1:]:
    r = CliRunner().invoke(app, ["drill", "run", "tests/hostile/drills/" + name, "--store", str(store)],
                           env={"COLUMNS": "80"})
    out[name] = {"text": r.output, "code": r.exit_code, "store": store.exists()}
print(json.dumps(out))
"""


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CPU, (60, 60))


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, object]]:
    proc = subprocess.run([sys.executable, "-c", _CHILD, *FILES], cwd=REPO, env=dict(os.environ),
                          capture_output=True, text=True, timeout=180, preexec_fn=_limits)
    assert proc.returncode == 0, f"child died (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    data: dict[str, dict[str, object]] = json.loads(proc.stdout.splitlines()[-1])
    return data


@pytest.mark.parametrize("name", FILES)
def test_hostile_scenario_cli_output(name: str, results: dict[str, dict[str, object]]) -> None:
    got = results[name]
    text = str(got["text"])
    assert got["code"] == 1 and not got["store"], got
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if "error[DR" in line]
    assert lines and len(lines) == len(set(lines)), "a diagnostic is printed twice"
    assert text.splitlines()[-1].startswith(f"error: tests/hostile/drills/{name}: ")
    expected = CORPUS / (name.removesuffix(".yaml") + ".expected")
    if os.environ.get("STANCH_UPDATE_GOLDEN"):
        expected.write_text(text, encoding="utf-8")
    assert expected.exists(), f"no golden {expected.name}: run with STANCH_UPDATE_GOLDEN=1 and review it"
    assert text == expected.read_text(encoding="utf-8")
