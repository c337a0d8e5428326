"""``stanch demo`` / ``make demo``: the flagship runbook end to end on a private sandbox.

Owns: starting an in-process sandbox (moto with three seeded accounts + the Slack stand-in),
pointing settings at it, running ``compromised-dependency`` for MAL-2026-2307 (axios) as a
drill, and printing what happened and where the incident folder is (once, at the end; paths and
ids printed whole — a terminal wraps them, a pipe gets them in one piece).
Must not touch: anything but loopback endpoints (it is a drill).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from rich.console import Console

DEMO_INPUTS = {
    "advisory": "MAL-2026-2307",
    # The axios releases were live on the registry from 00:21 to 03:15 UTC on 2026-03-31.
    "live_from": "2026-03-31T00:21:00Z",
    "live_until": "2026-03-31T03:15:00Z",
    "app_version": "4.2.1",
    "ca_secret": "stanch/sandbox/ca",
}


def verify_hint(home: Path, folder: Path) -> str:
    """A command that verifies the demo's record from any directory: this installation's stanch,
    with the STANCH_HOME whose installation key signed the record (so that key is trusted)."""
    stanch = Path(sys.executable).with_name("stanch")
    exe = str(stanch) if stanch.exists() else "stanch"
    return f"STANCH_HOME={shlex.quote(str(home))} {shlex.quote(exe)} timeline verify {shlex.quote(str(folder))}"


def run_demo(console: Console, *, keep: bool = False) -> int:
    from flows.engine.incident import new_incident_id
    from flows.engine.runbooks import REPO_RUNBOOKS
    from flows.entrypoints.terminal import execute_run, report_where
    from integrations.sandbox import Sandbox, observe
    from integrations.sandbox.state import default_slack_factory
    from integrations.settings import StanchSettings

    def say(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    home = Path(os.environ.get("STANCH_HOME", ".stanch")).resolve()
    console.print("[bold]stanch demo[/] — starting the sandbox (moto: 3 AWS accounts, Slack stand-in) …")
    with Sandbox(home / "demo-sandbox", slack_factory=default_slack_factory) as sb:
        assert sb.state is not None and sb.fleet is not None
        os.environ.update(sb.state.environment())
        os.environ["STANCH_SLACK_CHANNEL"] = "#incident"
        say(f"  AWS (moto)  {sb.url}")
        say(f"  Slack       {sb.slack_url}")
        say(f"  inventory   {sb.state.inventory_path}")
        for name, svc in sb.fleet.services.items():
            say(f"  service     {name:<14} account {svc.account}  CI keys {', '.join(svc.access_key_ids)}")
        settings = StanchSettings()
        inputs = {**DEMO_INPUTS, "inventory": str(sb.state.inventory_path)}
        summary = execute_run(REPO_RUNBOOKS / "compromised-dependency.yaml", inputs, new_incident_id(),
                              settings.store_dir, drill=True, initiator="cli:demo", where=False)
        console.print()
        console.print("[bold]What the sandbox saw[/]")
        for name, svc in sb.fleet.services.items():
            statuses = observe.access_key_statuses(sb.url, svc.account, svc.ci_user)
            say(f"  {name:<14} CI keys: " + ", ".join(f"{k} {v}" for k, v in statuses.items()))
        emails = observe.sent_emails(sb.url)
        recipients = sorted({t for m in emails for t in m.to})
        say(f"  SES emails sent: {sum(len(m.to) for m in emails)} ({', '.join(recipients)})")
        slack = sb.slack
        if slack is not None:
            calls = slack.calls()  # type: ignore[attr-defined]
            posted = [c for c in calls if c["method"] == "chat.postMessage"]
            updated = [c for c in calls if c["method"] == "chat.update"]
            say(f"  Slack: {len(posted)} messages posted, {len(updated)} header updates")
        console.print()
        report_where(summary, verify=verify_hint(home, Path(summary.get("folder", "")).resolve()))
        if keep:
            console.print("sandbox kept running; press Ctrl-C to stop")
            try:
                import time

                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    return 0 if summary.get("outcome") == "succeeded" else 1
