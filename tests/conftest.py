"""Test-wide settings: quiet, isolated Prefect; no real AWS credentials ever used."""

from __future__ import annotations

import os
import tempfile

_PREFECT_HOME = tempfile.mkdtemp(prefix="stanch-test-prefect-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_LOGGING_LEVEL"] = "CRITICAL"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ.pop("AWS_PROFILE", None)
os.environ["STANCH_OSV_API_URL"] = ""  # tests never reach api.osv.dev (test_osv_api serves a stand-in)
os.environ["STANCH_NPM_REGISTRY_URL"] = ""  # nor npm/PyPI (test_registry serves recorded responses)
os.environ["STANCH_PYPI_URL"] = ""
# Slack 5xx/connection retries back off 0.02*2^n s, not slack_sdk's 0.5*2^n (+1 s jitter): the
# Slack-down drill and outage tests make dozens of calls against a 503-ing stand-in (same retry count).
os.environ["STANCH_SLACK_RETRY_BACKOFF"] = "0.02"
# Runs sign their timelines by default with the installation key <STANCH_HOME>/keys/…: a test that
# sets no STANCH_HOME of its own gets a temporary one (never ./.stanch in the checkout).
os.environ.setdefault("STANCH_HOME", tempfile.mkdtemp(prefix="stanch-test-home-"))


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def prefect_server():  # type: ignore[no-untyped-def]
    """One temporary Prefect server for the whole session (real flows, real task runs)."""
    from prefect.settings import temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=240), \
            temporary_settings(updates={"flows.heartbeat_frequency": None}):
        yield


# --------------------------------------------------------------- PostgreSQL (the store, issue 11)
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A PostgreSQL database of its own per test module (``stanch_test_<hex>``), dropped afterwards;
    skips with the reason only when no PostgreSQL answers at 127.0.0.1:5432 (on this project's
    machines one always does, so CI runs these)."""
    import psycopg

    try:
        admin = psycopg.connect(ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at 127.0.0.1:5432 ({exc})")
    name = f"stanch_test_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def pg_store(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``STANCH_STORE`` pointing at the module's database."""
    monkeypatch.setenv("STANCH_STORE", pg_url)
    return pg_url
