"""A seeded sandbox (moto over HTTP + Slack stand-in) with settings pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sandboxes import seeded_sandbox

from integrations.sandbox import Sandbox


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: None) -> Iterator[Sandbox]:
    yield from seeded_sandbox(tmp_path, monkeypatch)
