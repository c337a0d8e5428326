"""Fixtures for the Slack integration tests: a live stand-in and settings pointing at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from integrations.sandbox.slack_standin import SlackStandIn
from integrations.settings import StanchSettings
from integrations.slack.client import SlackClient


@pytest.fixture(scope="module")
def _standin_server() -> Iterator[SlackStandIn]:
    with SlackStandIn() as standin:
        yield standin


@pytest.fixture
def standin(_standin_server: SlackStandIn) -> Iterator[SlackStandIn]:
    _standin_server.clear_calls()
    _standin_server.clear_faults()
    yield _standin_server
    _standin_server.clear_faults()


@pytest.fixture
def slack_settings(standin: SlackStandIn, tmp_path: Path) -> StanchSettings:
    return StanchSettings(
        home=tmp_path,
        slack_base_url=standin.api_url,
        slack_token=SecretStr(standin.token),
        slack_channel="#incident",
    )


@pytest.fixture
def client(slack_settings: StanchSettings) -> SlackClient:
    return SlackClient.from_settings(
        slack_settings, rate_limit_retries=3, server_error_retries=1, connection_retries=0
    )
