"""Slack probe: the incident thread has one report per step (by the reports' message metadata).

Every step of the runbook gets a report, whatever its status (succeeded, failed, skipped).

Reads the thread with slack_sdk ``conversations.replies`` (the stand-in in drills). The thread is
``ctx.incident["slack"]`` (``{channel, ts}`` of the header). Must not touch: any posting API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from slack_sdk import WebClient

from integrations.probes.base import Probe, ProbeContext, ProbeParams, ProbeResult
from integrations.slack import REPORT_EVENT


class ReportParams(ProbeParams):
    #: step ids that must each have a report (default: ``ctx.incident["steps"]``, else every step
    #: of the runbook at ``ctx.incident["runbook_path"]``)
    steps: list[str] | None = None


def runbook_steps(ctx: ProbeContext) -> list[str]:
    """The step ids the incident's runbook declares (plain YAML read; the spec lives in flows)."""
    if ctx.incident.get("steps"):
        return [str(s) for s in ctx.incident["steps"]]
    path = ctx.incident.get("runbook_path")
    if not path or not Path(path).is_file():
        return []
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return [str(s["id"]) for s in data.get("steps") or [] if isinstance(s, dict) and "id" in s]


def thread_reports(ctx: ProbeContext) -> dict[str, list[str]]:
    """step -> statuses of the first part of each step report in the incident thread."""
    where = ctx.incident.get("slack") or {}
    if not (ctx.slack_base_url and ctx.slack_token and where.get("channel") and where.get("ts")):
        raise ValueError("no Slack thread recorded for this incident")
    base = ctx.slack_base_url if ctx.slack_base_url.endswith("/") else ctx.slack_base_url + "/"
    client = WebClient(token=ctx.slack_token, base_url=base)
    out: dict[str, list[str]] = {}
    cursor: str | None = None
    while True:
        resp = client.conversations_replies(channel=where["channel"], ts=where["ts"], include_all_metadata=True,
                                            limit=200, cursor=cursor)
        for msg in resp.get("messages") or []:
            meta = msg.get("metadata") or {}
            payload = meta.get("event_payload") or {}
            if meta.get("event_type") == REPORT_EVENT and int(payload.get("part", 0)) == 0:
                out.setdefault(str(payload.get("step")), []).append(str(payload.get("status")))
        cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
        if not cursor:
            return out


def report_per_step(params: Any, ctx: ProbeContext, name: str) -> ProbeResult:
    reports = thread_reports(ctx)
    steps = params.steps if params.steps is not None else runbook_steps(ctx)
    bad = [f"{s}: no report" for s in steps if s not in reports]
    bad += [f"{s}: {len(v)} reports with the same status" for s, v in sorted(reports.items()) if len(set(v)) != len(v)]
    if not steps and not reports:
        bad.append("no step report in the thread")
    return ProbeResult(name, not bad, reports, "one report per step in the incident's Slack thread",
                       "; ".join(bad) or "ok")


PROBES = [
    Probe("slack.report_per_step", "one report per step in the incident's Slack thread, none duplicated",
          ReportParams, report_per_step),
]
