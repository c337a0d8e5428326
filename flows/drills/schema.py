"""The checked-in ``runbooks/drills/schema.json`` (JSON Schema of a drill scenario).

Owns: writing/checking that file from ``flows.drills.scenario.scenario_schema`` (``make docs`` runs
``python -m flows.drills.schema``; ``--check`` exits 1 when the file is stale).
Must not touch: anything but that file.
"""

from __future__ import annotations

import json
from pathlib import Path

from flows.drills.scenario import REPO_DRILLS, scenario_schema
from flows.engine.spec.schema import write_or_check

__all__ = ["SCHEMA_PATH", "main", "render_schema"]

SCHEMA_PATH: Path = REPO_DRILLS / "schema.json"


def render_schema() -> str:
    return json.dumps(scenario_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    return write_or_check(SCHEMA_PATH, render_schema(), "flows.drills.schema", argv)


if __name__ == "__main__":
    raise SystemExit(main())
