"""The drill-spec side of DRILL-INTERFACE.md as the runner sees it: scenarios, probes, scorecard.

Owns: one place that picks drill-spec's modules (``flows.drills.scenario``, ``integrations.probes``,
``flows.drills.scorecard``) when they exist and the temporary stand-in ``flows.drills.interim``
otherwise. Once drill-spec is merged, point these names at their modules and delete interim.
Must not touch: anything else.
"""

from __future__ import annotations

import importlib
from typing import Any


def _pick(real: str, attr: str) -> Any:
    try:
        return getattr(importlib.import_module(real), attr)
    except (ImportError, AttributeError):
        return getattr(importlib.import_module("flows.drills.interim"), attr)


load_scenario: Any = _pick("flows.drills.scenario", "load_scenario")
resolve_scenario: Any = _pick("flows.drills.scenario", "resolve_scenario")
default_probes: Any = _pick("integrations.probes", "default_probes")
ProbeContext: Any = _pick("integrations.probes", "ProbeContext")
build_scorecard: Any = _pick("flows.drills.scorecard", "build_scorecard")
render_markdown: Any = _pick("flows.drills.scorecard", "render_markdown")
seconds: Any = _pick("flows.drills.scenario", "seconds")
