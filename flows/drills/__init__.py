"""Tabletop drills (issue 10): scenarios, injects, runner, scorecard, history."""
