"""``stanch-runbook/stanch``: the one deployment that runs any runbook, served by this process.

Owns: ``serve_deployment`` (``run_runbook.serve(name="stanch", …)``) — a long-lived runner that
polls the Prefect server and executes each run requested with ``run_deployment`` (the Slack app's
``DeploymentLauncher``, drills) in a subprocess. Set ``PREFECT_RUNNER_POLL_FREQUENCY=1`` (the
default 10 s poll makes a Slack command wait ~10 s before containment starts; 1 s gives ~2 s).

Must not touch: the flow body (``flows.engine.runtime``) or how runs are requested (``flows.entrypoints.slack``).
"""

from __future__ import annotations

import argparse
import os

NAME = "stanch"
FULL_NAME = f"stanch-runbook/{NAME}"


def serve_deployment(*, name: str = NAME, limit: int | None = 5, poll_frequency: int | None = 1,
                     pause_on_shutdown: bool = False) -> None:
    """Create/update the deployment and run flow runs for it until interrupted (blocking).

    ``poll_frequency`` sets ``PREFECT_RUNNER_POLL_FREQUENCY`` for this process unless it is
    already set in the environment; ``limit`` bounds concurrent runs (each is a subprocess)."""
    if poll_frequency is not None:
        os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", str(poll_frequency))
    from flows.engine.runtime import run_runbook

    run_runbook.serve(name=name, limit=limit, pause_on_shutdown=pause_on_shutdown,
                      description="Runs any stanch runbook; parameters: runbook_path, inputs, incident_id, store, "
                                  "drill, initiator.", print_starting_message=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.entrypoints.deploy",
                                     description="Serve the stanch deployment.")
    parser.add_argument("--limit", type=int, default=5, help="Concurrent runs (subprocesses).")
    parser.add_argument("--poll", type=int, default=1, help="Runner poll frequency in seconds.")
    args = parser.parse_args(argv)
    serve_deployment(limit=args.limit, poll_frequency=args.poll)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
