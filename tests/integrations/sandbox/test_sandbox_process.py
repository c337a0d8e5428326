"""`stanch sandbox up|down`: a detached server process with a state file; in-process Sandbox."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from integrations.errors import ConfigurationError
from integrations.sandbox import Sandbox, down, is_sandbox_endpoint, load_state, read_state, up
from integrations.sandbox.observe import access_key_statuses
from integrations.sandbox.state import process_alive


def test_up_down_detached(tmp_path: Path) -> None:
    home = tmp_path / "home"
    state = up(home, timeout=60)
    try:
        assert state.pid != os.getpid() and process_alive(state.pid)
        assert is_sandbox_endpoint(state.moto_url)
        assert state.inventory.is_file() and (home / "sandbox.json").is_file()
        assert state.slack_url and state.slack_url.endswith("/api/")
        env = state.environment()
        assert (
            env["STANCH_AWS_ENDPOINT_URL"] == state.moto_url
            and env["STANCH_SLACK_BASE_URL"] == state.slack_url
        )
        keys = access_key_statuses(state.moto_url, "222222222222", "ci-desktop-app")
        assert list(keys.values()) == ["Active", "Active"]
        assert up(home).pid == state.pid  # already running: reused
    finally:
        assert down(home)
    assert read_state(home) is None and not process_alive(state.pid)
    assert not down(home)
    with pytest.raises(ConfigurationError, match="stanch sandbox up"):
        load_state(home)


def test_in_process_sandbox(tmp_path: Path) -> None:
    with Sandbox(tmp_path, write_state=True) as sb:
        assert sb.fleet is not None and sb.state is not None
        assert load_state(tmp_path).moto_url == sb.url
        assert sb.fleet.service("desktop-app").affected
    assert read_state(tmp_path) is None


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("http://127.0.0.1:5000", True),
        ("http://localhost:1", True),
        ("http://[::1]:8080/", True),
        ("http://127.8.0.2", True),
        ("https://iam.amazonaws.com", False),
        ("http://10.0.0.5:5000", False),
        ("http://127.0.0.1.nip.io", False),
        (None, False),
        ("", False),
    ],
)
def test_is_sandbox_endpoint(url: str | None, ok: bool) -> None:
    assert is_sandbox_endpoint(url) is ok
