"""The hostile-runbook corpus: every file in ``runbooks/`` is validated, and its diagnostics must
equal ``<name>.expected`` (``ok`` when it must pass).

The corpus holds DoS files (alias bombs, 30,000-deep nesting that used to segfault the
interpreter), so the validation runs in one child process with a memory cap (RLIMIT_AS), a CPU
cap (RLIMIT_CPU) and a wall-clock timeout: a regression shows up as a failed test, not as a
killed pytest. Each file's CPU time is measured in the child and must stay small.

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
CORPUS = HERE / "runbooks"
REPO = HERE.parents[1]
FILES = sorted(p.name for p in CORPUS.glob("*.yaml"))
MEMORY_LIMIT = 1024 * 1024 * 1024  # bytes of address space for the child
CPU_LIMIT = 60  # seconds for the whole corpus
PER_FILE_CPU = 5.0  # seconds

_CHILD = r"""
import json, sys, time
from flows.engine.spec import format_all, validate_file
from integrations.base import default_registry

registry = default_registry()
out = {}
for name in sys.argv[1:]:
    t = time.process_time()
    diags = validate_file("tests/hostile/runbooks/" + name, registry)
    out[name] = {"text": format_all(diags) or "ok\n", "cpu": time.process_time() - t}
print(json.dumps(out))
"""


def _limits() -> None:  # runs in the child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_LIMIT, CPU_LIMIT))


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, object]]:
    env = {k: v for k, v in os.environ.items() if k != "STANCH_TEMPLATE_DIRS"}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, *FILES],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=_limits,
    )
    assert proc.returncode == 0, f"validator died (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    data: dict[str, dict[str, object]] = json.loads(proc.stdout)
    return data


def test_corpus_is_not_empty() -> None:
    assert len(FILES) >= 25


@pytest.mark.parametrize("name", FILES)
def test_hostile_runbook_diagnostics(name: str, results: dict[str, dict[str, object]]) -> None:
    got = str(results[name]["text"]).replace(str(REPO), "<repo>")
    expected = CORPUS / (name.removesuffix(".yaml") + ".expected")
    if os.environ.get("STANCH_UPDATE_GOLDEN"):
        expected.write_text(got, encoding="utf-8")
    assert expected.exists(), f"no golden {expected.name}: run with STANCH_UPDATE_GOLDEN=1 and review it"
    assert got == expected.read_text(encoding="utf-8")
    assert float(str(results[name]["cpu"])) < PER_FILE_CPU
