"""The hostile expression corpus (tests/hostile/expressions/): every payload is refused cleanly.

One file per payload class (pow bombs, loop nesting, lipsum, repetition, formatting widths, deep
nesting, huge literals, ...); its first line says what the refusal must say (``{# expect: … #}``).
Each payload is evaluated in a fresh process with a wall-clock timeout and an address-space rlimit,
both as a runbook expression (``render_value``) and as a report template (``render_template``):
a hang, a crash, a traceback or a gigabyte allocation fails the test; so does any answer other
than stanch's own error naming the limit.
"""

from __future__ import annotations

import json
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

CORPUS = Path(__file__).parent / "expressions"
PAYLOADS = sorted(CORPUS.glob("*.j2"))
TIMEOUT_S = 15  # expression budget 2 s + template budget 5 s + interpreter start, on a loaded machine
MEMORY_BYTES = 512 * 1024 * 1024

_EVALUATE = r"""
import json, sys
from pathlib import Path
from flows.engine.expressions import ExpressionError, render_value
from flows.engine.reports import ReportError, render_template

path = Path(sys.argv[1])
source = path.read_text(encoding="utf-8")
out = {}
try:
    out["expression"] = ["value", repr(render_value(source, {"inputs": {}}))[:200]]
except ExpressionError as exc:
    out["expression"] = [type(exc).__name__, str(exc)[-400:]]
try:
    out["template"] = ["value", render_template(path, {"inputs": {}})[:200]]
except ReportError as exc:
    out["template"] = [type(exc).__name__, str(exc)[-400:]]
print(json.dumps(out))
"""


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))


def _expected(path: Path) -> str:
    m = re.match(r"\{# expect: (.*?) #\}", path.read_text(encoding="utf-8"))
    assert m, f"{path.name}: first line must be {{# expect: … #}}"
    return m.group(1)


def test_corpus_covers_every_payload_class() -> None:
    names = {p.stem for p in PAYLOADS}
    for wanted in ("pow-bomb", "range-nesting", "lipsum", "string-multiply", "center-width", "indent-width",
                   "format-method-width", "format-filter-width", "percent-width", "deep-parentheses",
                   "huge-int-literal"):
        assert wanted in names


@pytest.mark.parametrize("payload", PAYLOADS, ids=[p.stem for p in PAYLOADS])
def test_payload_is_refused_quickly_within_memory(payload: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", _EVALUATE, str(payload)], cwd=root, capture_output=True,
                          text=True, timeout=TIMEOUT_S, preexec_fn=_limit_memory, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    result = json.loads(proc.stdout)
    expected = _expected(payload)
    kind, message = result["expression"]
    assert kind == "ExpressionLimitError", result
    assert expected in message, message
    kind, message = result["template"]
    assert kind == "ReportError", result
    assert expected in message and payload.name in message, message


def test_plan_and_validate_refuse_a_pow_bomb_located_and_quickly() -> None:
    from typer.testing import CliRunner

    from flows.engine.planner import dry_run  # noqa: F401  (imports and the registry are not what is timed)
    from flows.entrypoints.cli import app
    from integrations.base import default_registry

    default_registry()
    for command in ("validate", "plan"):
        started = time.monotonic()
        result = CliRunner().invoke(app, [command, str(CORPUS / "pow-bomb-in-with.yaml")])
        assert time.monotonic() - started < 10
        assert result.exit_code == 1, result.output
        assert re.search(r"pow-bomb-in-with\.yaml:6:\d+: error\[RB108\]: expression refused: 10 \*\* 10000000000 "
                         r"exceeds the limit of 10,000 digits", " ".join(result.output.split())), result.output


def test_plan_stops_at_a_pow_bomb_armed_by_an_input_naming_the_step() -> None:
    from typer.testing import CliRunner

    from flows.entrypoints.cli import app

    assert CliRunner().invoke(app, ["validate", str(CORPUS / "pow-bomb-from-input.yaml")]).exit_code == 0
    started = time.monotonic()
    result = CliRunner().invoke(app, ["plan", str(CORPUS / "pow-bomb-from-input.yaml")])
    assert time.monotonic() - started < 10
    assert result.exit_code == 2, result.output
    assert ("step 'note': expression '{{ inputs.base ** (10 ** 10) }}': 10 ** 10000000000 exceeds the limit of "
            "10,000 digits") in " ".join(result.output.split())


def test_validate_locates_deep_nesting_instead_of_recursing() -> None:
    from flows.engine.spec import validate_file

    diags = validate_file(CORPUS / "deep-parentheses-in-if.yaml")
    located = [d.format() for d in diags if d.code == "RB108"]
    assert len(located) == 1, [d.format() for d in diags]
    assert re.match(r".*deep-parentheses-in-if\.yaml:8:\d+: error\[RB108\]: .*brackets nested 3000 deep exceed "
                    r"the limit of 50", located[0]), located
