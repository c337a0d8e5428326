"""A seeded sandbox (moto over HTTP + Slack stand-in) with settings pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from integrations.aws.session import clear_client_cache
from integrations.sandbox import Sandbox
from integrations.sandbox.state import default_slack_factory


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: None) -> Iterator[Sandbox]:
    clear_client_cache()
    with Sandbox(tmp_path / "sandbox", slack_factory=default_slack_factory) as sb:
        assert sb.state is not None
        for k, v in sb.state.environment().items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("STANCH_SLACK_CHANNEL", "#incident")
        monkeypatch.setenv("STANCH_HOME", str(tmp_path / "home"))
        yield sb
    clear_client_cache()
