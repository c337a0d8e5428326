"""Fixtures: the Slack app served over real HTTP, offline (recording launcher) or live (sandbox)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from slack_harness import SECRET, SlackHarness, make_runbooks, serve_app

from flows.entrypoints.slack.launchers import InProcessLauncher, RecordingLauncher
from flows.entrypoints.slack_app import SlackAppConfig, create_app
from integrations.aws.session import clear_client_cache
from integrations.sandbox import Sandbox
from integrations.sandbox.slack_standin import SlackStandIn
from integrations.sandbox.state import default_slack_factory
from integrations.settings import StanchSettings


@pytest.fixture
def offline(tmp_path: Path) -> Iterator[SlackHarness]:
    """The app with a launcher that only records: no Prefect, no AWS (signature, dedupe, auth)."""
    with SlackStandIn() as standin:
        settings = StanchSettings(home=tmp_path / "home", slack_base_url=standin.api_url,
                                  slack_token=SecretStr(standin.token), slack_signing_secret=SecretStr(SECRET),
                                  slack_channel="#incident")
        launcher = RecordingLauncher()
        (tmp_path / "inputs").mkdir()
        app = create_app(settings, launcher, config=SlackAppConfig(runbooks_dir=make_runbooks(tmp_path / "rb"),
                                                                   input_dirs=[tmp_path / "inputs"]))
        url, stop = serve_app(app)
        try:
            yield SlackHarness(app, url, standin, settings.store_dir, launcher)
        finally:
            stop()


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: None) -> Iterator[SlackHarness]:
    """The app with the in-process launcher against a seeded sandbox (moto + Slack stand-in)."""
    clear_client_cache()
    with Sandbox(tmp_path / "sandbox", slack_factory=default_slack_factory) as sb:
        assert sb.state is not None and isinstance(sb.slack, SlackStandIn)
        for k, v in sb.state.environment().items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("STANCH_SLACK_CHANNEL", "#incident")
        monkeypatch.setenv("STANCH_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("STANCH_SLACK_SIGNING_SECRET", SECRET)
        settings = StanchSettings()
        launcher = InProcessLauncher()
        config = SlackAppConfig(runbooks_dir=make_runbooks(tmp_path / "rb"), drill=True)
        app = create_app(settings, launcher, config=config)
        url, stop = serve_app(app)
        try:
            yield SlackHarness(app, url, sb.slack, settings.store_dir, launcher)
        finally:
            stop()
            launcher.join(timeout=30)
    clear_client_cache()
