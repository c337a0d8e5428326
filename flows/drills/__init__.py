"""Tabletop drills (issue 10): scenarios, injects, the drill runner, the scorecard, history."""
