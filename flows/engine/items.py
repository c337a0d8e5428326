"""Fan-out item naming: each item of a ``for_each`` gets a stable, readable key.

Owns: ``item_key`` (used for task-run names ``step[key]``, timeline ``item`` and resume).
Must not touch: Prefect, boto3, Slack.
"""

from __future__ import annotations

import re
from typing import Any

from flows.engine.compiler import PlannedStep
from flows.engine.expressions import render_value


def item_key(step: PlannedStep, item: Any, index: int, scope: dict[str, Any]) -> str:
    """``item_name`` if the step has one; else the item's name/id/key; else the scalar; else index."""
    if step.item_name:
        key = str(render_value(step.item_name, {**scope, "item": item}))
    elif isinstance(item, dict):
        key = str(item.get("name") or item.get("id") or item.get("key") or index)
    elif isinstance(item, str | int | float):
        key = str(item)
    else:
        key = str(index)
    return re.sub(r"[^A-Za-z0-9._@:/-]+", "-", key)[:80] or str(index)
