"""``python -m integrations.sandbox serve|up|down|status --home HOME`` (what ``stanch sandbox`` calls)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from integrations.sandbox.state import down, read_state, serve, up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m integrations.sandbox")
    parser.add_argument("command", choices=["serve", "up", "down", "status"])
    parser.add_argument("--home", type=Path, default=Path(".stanch"))
    parser.add_argument(
        "--slack-factory", default=None, help="module:callable returning a started Slack stand-in, or none"
    )
    parser.add_argument("--fleet-variant", default="default", help="Fleet to seed (serve only): default, two-lines")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.home, args.slack_factory, args.fleet_variant)
        return 0
    if args.command == "up":
        state = up(args.home)
        print(state.model_dump_json(indent=2))
        return 0
    if args.command == "down":
        print("stopped" if down(args.home) else "not running")
        return 0
    current = read_state(args.home)
    print(current.model_dump_json(indent=2) if current else "not running")
    return 0 if current else 1


if __name__ == "__main__":
    sys.exit(main())
