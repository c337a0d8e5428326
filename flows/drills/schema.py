"""The checked-in ``runbooks/drills/schema.json`` (JSON Schema of a drill scenario).

Owns: writing/checking that file from ``flows.drills.scenario.scenario_schema`` (``make docs`` runs
``python -m flows.drills.schema``; ``--check`` exits 1 when the file is stale).
Must not touch: anything but that file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from flows.drills.scenario import REPO_DRILLS, scenario_schema

__all__ = ["SCHEMA_PATH", "main", "render_schema"]

SCHEMA_PATH: Path = REPO_DRILLS / "schema.json"


def render_schema() -> str:
    return json.dumps(scenario_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render_schema()
    if "--check" in args:
        current = SCHEMA_PATH.read_text(encoding="utf-8") if SCHEMA_PATH.exists() else ""
        if current != text:
            print(f"{SCHEMA_PATH} is stale: run `python -m flows.drills.schema`", file=sys.stderr)
            return 1
        return 0
    SCHEMA_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
