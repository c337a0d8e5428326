"""In-process subscribers to timeline events (the CLI's live progress, the Slack app).

Owns: ``add_listener``, ``listening`` and ``publish``. A broken subscriber never breaks a run.
Must not touch: Prefect, boto3, Slack.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

Listener = Callable[[dict[str, Any]], None]
_listeners: list[Listener] = []
_listeners_lock = threading.Lock()


def add_listener(fn: Listener) -> Callable[[], None]:
    """Subscribe to timeline events of runs in this process (the CLI's live progress)."""
    with _listeners_lock:
        _listeners.append(fn)

    def remove() -> None:
        with _listeners_lock:
            if fn in _listeners:
                _listeners.remove(fn)
    return remove


def listening() -> bool:
    """Whether any subscriber is registered (a run with none skips building what it would publish)."""
    return bool(_listeners)


def publish(event: dict[str, Any]) -> None:
    with _listeners_lock:
        targets = list(_listeners)
    for fn in targets:
        with contextlib.suppress(Exception):  # a broken progress display must never break containment
            fn(event)
