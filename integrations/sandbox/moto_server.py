"""moto as a threaded WSGI server on 127.0.0.1, behind the fault injector (and test-only kill
points, ``integrations.sandbox.killpoints``).

Owns: ``MotoServer`` (start/stop/url, context manager) and ``reset_moto`` (wipe all AWS state).
Only ever binds loopback: the sandbox must not be reachable from the network.

moto's backends are process-global: two ``MotoServer`` objects in one process share state.

Must not touch: ``flows``, ``prefect``.
"""

from __future__ import annotations

import logging
import os
import threading
from types import TracebackType

import urllib3

from integrations.sandbox.faults import FaultInjector, identify
from integrations.sandbox.killpoints import KillPoints

__all__ = ["MotoServer", "reset_moto"]

_http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=30))


def _quiet() -> None:
    for name in ("werkzeug", "moto"):
        logging.getLogger(name).setLevel(logging.ERROR)


class MotoServer:
    """``with MotoServer() as srv: srv.url`` — moto on a free loopback port, threaded."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in {"127.0.0.1", "::1", "localhost"}:
            raise ValueError("the sandbox moto server only binds loopback")
        self.host = host
        self.port = port
        self.injector: FaultInjector | None = None
        self.killpoints: KillPoints | None = None
        self._server: object | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("MotoServer is not started")
        return f"http://{self.host}:{self.port}"

    def start(self) -> MotoServer:
        if self._server is not None:
            return self
        _quiet()
        # Servers in the sandbox must not wait for validation or talk to Docker.
        os.environ.setdefault("MOTO_ACM_VALIDATION_WAIT", "0")
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        self.injector = FaultInjector(DomainDispatcherApplication(create_backend_app))
        self.killpoints = KillPoints(self.injector, identify=lambda environ: identify(environ)[:2])
        server = make_server(
            self.host, self.port, self.killpoints, threaded=True, request_handler=MotoRequestHandler
        )
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name=f"moto:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()  # type: ignore[attr-defined]
        server.server_close()  # type: ignore[attr-defined]
        if self._thread is not None:
            self._thread.join(timeout=5)

    def reset(self) -> None:
        """Wipe every AWS resource and every fault rule."""
        reset_moto(self.url)
        if self.injector is not None:
            self.injector.clear()

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def reset_moto(endpoint: str) -> None:
    """``POST /moto-api/reset`` on any moto endpoint."""
    resp = _http.request("POST", f"{endpoint.rstrip('/')}/moto-api/reset")
    if resp.status != 200:
        raise RuntimeError(f"moto reset failed: HTTP {resp.status}")
