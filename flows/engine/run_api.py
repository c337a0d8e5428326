"""Which Prefect API a run talks to, so a decision from another process reaches the same server.

Owns: ``current_api_url`` (inside a run: PREFECT_API_URL, else the URL of the temporary server
Prefect started in this process — the embedded default of ``stanch run``) and ``decision_api``
(in the approver's process: PREFECT_API_URL when set, else the URL the run recorded in its
incident meta as ``prefect_api_url`` if that server answers). Without it, ``stanch approve`` on
the embedded default started a temporary server of its own (15-39 s) that knew no paused run.
Must not touch: flow-run states, the incident's timeline.
"""

from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import Iterator
from typing import Any


def current_api_url() -> str | None:
    """The API URL of the Prefect server this process uses, or None when there is none yet."""
    from prefect.settings import PREFECT_API_URL

    configured = PREFECT_API_URL.value()
    if configured:
        return str(configured)
    try:
        from prefect.server.api.server import SubprocessASGIServer
    except ImportError:  # pragma: no cover - prefect without the server extra
        return None
    for server in list(SubprocessASGIServer._instances.values()):
        if server.running and server.port:
            return str(server.api_url)
    return None


def _answers(api_url: str, timeout: float = 1.0) -> bool:
    if not api_url.startswith(("http://", "https://")):
        return False
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def decision_api(meta: dict[str, Any]) -> Iterator[str | None]:
    """Within: PREFECT_API_URL points at the run's server (the recorded one when none is
    configured and it answers); yields the URL used, or None (Prefect's own default)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    recorded = meta.get("prefect_api_url")
    if configured or not isinstance(recorded, str) or not _answers(recorded):
        yield str(configured) if configured else None
        return
    with temporary_settings({PREFECT_API_URL: recorded}):
        yield recorded
