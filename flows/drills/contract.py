"""What the drill runner needs from the scenario, probe and scorecard modules, in one place.

Owns: nothing but the names the runner imports (one place to see what it depends on).
Must not touch: anything else.
"""

from __future__ import annotations

from flows.drills.scenario import load_scenario, resolve_scenario, seconds
from flows.drills.scorecard import build_scorecard, render_markdown
from integrations.probes import ProbeContext, default_probes

__all__ = ["ProbeContext", "build_scorecard", "default_probes", "load_scenario", "render_markdown",
           "resolve_scenario", "seconds"]
