"""Which Prefect API a run talks to, so a decision from another process reaches the same server.

Owns: ``current_api_url`` (inside a run: PREFECT_API_URL, else the URL of the temporary server
Prefect started in this process — the embedded default of ``stanch run``/``resume``). Each
attempt records it in the incident meta as ``prefect_api_url``; the approver's process reads it
there (``flows.engine.decisions.decision_api``) instead of starting a temporary server of its
own (15-39 s) that knows no paused run.
Must not touch: flow-run states, the incident's timeline.
"""

from __future__ import annotations


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
