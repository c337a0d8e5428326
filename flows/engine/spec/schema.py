"""JSON Schema of the runbook language, generated from the pydantic models.

Owns: ``build_schema()`` and the checked-in ``runbooks/schema.json`` (regenerate with
``python -m flows.engine.spec.schema``; ``--check`` exits 1 when the file is stale, for CI).
Property names are the YAML spellings (``with``, ``if``) so editors autocomplete them.
Must not touch: the action registry (action params are not in the schema), Prefect, boto3, Slack.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from flows.engine.spec.models import Runbook

__all__ = ["SCHEMA_ID", "SCHEMA_PATH", "build_schema", "main", "render_schema"]

SCHEMA_ID = "https://stanch.dev/schemas/runbook.schema.json"
SCHEMA_PATH = Path(__file__).resolve().parents[3] / "runbooks" / "schema.json"


def build_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a runbook file."""
    body = Runbook.model_json_schema(by_alias=True, mode="validation")
    body.pop("title", None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "stanch runbook",
        "description": "An incident-response runbook (see docs/runbook-language.md).",
        **body,
    }


def render_schema() -> str:
    """``build_schema()`` as the exact text of ``runbooks/schema.json``."""
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"


def write_or_check(path: Path, text: str, module: str, argv: list[str] | None = None) -> int:
    """Write a generated schema file, or with ``--check`` exit 1 when the checked-in one is stale.
    Shared by the runbook schema and the drill-scenario schema (``flows.drills.schema``)."""
    args = sys.argv[1:] if argv is None else argv
    if "--check" in args:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            print(f"{path} is stale: run `python -m {module}`", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return write_or_check(SCHEMA_PATH, render_schema(), "flows.engine.spec.schema", argv)


if __name__ == "__main__":
    raise SystemExit(main())
