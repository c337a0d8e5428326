"""A seeded sandbox (moto over HTTP + Slack stand-in) with the environment pointed at it, shared by
the ``sandbox`` fixture (conftest.py) and modules that need a fleet variant."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from integrations.aws.session import clear_client_cache
from integrations.sandbox import Sandbox
from integrations.sandbox.state import default_slack_factory


def seeded_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **options: object) -> Iterator[Sandbox]:
    """A sandbox (``options`` go to ``Sandbox``, e.g. ``fleet_variant``) with the environment
    pointed at it; the fixtures of this folder and of single test modules share it."""
    clear_client_cache()
    with Sandbox(tmp_path / "sandbox", slack_factory=default_slack_factory, **options) as sb:  # type: ignore[arg-type]
        assert sb.state is not None
        for k, v in sb.state.environment().items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("STANCH_SLACK_CHANNEL", "#incident")
        monkeypatch.setenv("STANCH_HOME", str(tmp_path / "home"))
        yield sb
    clear_client_cache()
