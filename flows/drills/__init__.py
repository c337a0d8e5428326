"""Drills (issue 10): scenarios, injects, the drill runner, the scorecard and history.

Layering: entry points > drills > engine. Nothing in ``flows.engine`` imports this package.
"""
