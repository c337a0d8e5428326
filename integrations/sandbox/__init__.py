"""The sandbox: moto behind a fault injector, a seeded three-account fleet, and process control.

Used by the demo (``stanch sandbox up``), tabletop drills and the tests. Modules:
``moto_server`` (MotoServer), ``faults`` (FaultInjector + HTTP helpers), ``fleet``
(seed_fleet/SandboxFleet), ``state`` (Sandbox, SandboxState, up/down/serve,
is_sandbox_endpoint), ``observe`` (read-only views: key statuses, sent e-mail, manifests).

Must not touch: ``flows``, ``prefect``.
"""

from __future__ import annotations

from integrations.sandbox.faults import FaultRule, clear_faults, inject_fault, list_faults
from integrations.sandbox.fleet import SandboxFleet, SandboxService, seed_fleet
from integrations.sandbox.moto_server import MotoServer, reset_moto
from integrations.sandbox.state import (
    Sandbox,
    SandboxState,
    down,
    is_sandbox_endpoint,
    load_state,
    read_state,
    serve,
    up,
)

__all__ = [
    "FaultRule",
    "MotoServer",
    "Sandbox",
    "SandboxFleet",
    "SandboxService",
    "SandboxState",
    "clear_faults",
    "down",
    "inject_fault",
    "is_sandbox_endpoint",
    "list_faults",
    "load_state",
    "read_state",
    "reset_moto",
    "seed_fleet",
    "serve",
    "up",
]
