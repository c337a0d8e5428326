"""Fixtures shared by the AWS and sandbox tests: one moto server (over real HTTP) per session.

- ``moto_server``  (session): the in-process ``MotoServer`` behind the fault injector.
- ``aws_endpoint`` (function): its URL, with all AWS state and fault rules wiped before the
  test. Cached boto3 sessions survive the reset (session.py pins the moto account per request).
- ``aws_settings`` (function): ``StanchSettings`` pointing at it.
- ``make_ctx``     (function): ``make_ctx(step_id="s", item_key=None, drill=False)`` -> an
  ``ActionContext`` whose ``record`` appends to ``ctx.recorded`` (a list of (kind, data)).
- ``fleet``        (function): the seeded sandbox fleet (three accounts) in ``tmp_path/fleet``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from integrations.base import ActionContext, IntentLedger
from integrations.sandbox.fleet import SandboxFleet, seed_fleet
from integrations.sandbox.moto_server import MotoServer
from integrations.settings import StanchSettings


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture
def aws_endpoint(moto_server: MotoServer) -> Iterator[str]:
    moto_server.reset()
    yield moto_server.url
    if moto_server.injector is not None:
        moto_server.injector.clear()
    moto_server.reset()  # moto's backends are per process: leave nothing for the next server here


@pytest.fixture
def aws_settings(aws_endpoint: str, tmp_path: Path) -> StanchSettings:
    # One attempt per call, so action tests see each injected fault (botocore would retry it).
    return StanchSettings(aws_endpoint_url=aws_endpoint, aws_region="us-east-1", home=tmp_path, aws_max_attempts=1)


@pytest.fixture
def make_ctx(aws_settings: StanchSettings) -> Callable[..., ActionContext]:
    intents = IntentLedger()  # one per test, as the engine keeps one per incident run

    def make(
        step_id: str = "step", item_key: str | None = None, drill: bool = False, incident_id: str = "INC-42"
    ) -> ActionContext:
        recorded: list[tuple[str, dict[str, Any]]] = []
        ctx = ActionContext(
            incident_id=incident_id,
            step_id=step_id,
            settings=aws_settings,
            item_key=item_key,
            drill=drill,
            record=lambda kind, data: recorded.append((kind, data)),
            intents=intents,
        )
        ctx.recorded = recorded  # type: ignore[attr-defined]
        return ctx

    return make


@pytest.fixture
def fleet(aws_endpoint: str, tmp_path: Path) -> SandboxFleet:
    return seed_fleet(aws_endpoint, tmp_path / "fleet")
