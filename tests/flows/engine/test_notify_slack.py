"""What people see in Slack, read back from the stand-in: an approval request that mentions its
approvers (users as ``<@U…>``, a user group as ``<!subteam^S…>``) and says DRILL in a drill, and
a step report posted as Block Kit with no raw Markdown table, within Block Kit's limits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from flows.engine.compiler import compile_plan
from flows.engine.incident import Incident
from flows.engine.notify import StatusNotifier
from flows.engine.spec import load_runbook
from integrations.base import default_registry
from integrations.sandbox.slack_standin import SlackStandIn
from integrations.settings import StanchSettings
from integrations.slack.blocks import block_problems

RUNBOOK = """\
name: gated
title: A gated step
inputs: {}
steps:
  - id: prepare
    action: core.note
    with: {message: prepared}
  - id: approve-delete
    needs: [prepare]
    approval:
      approvers: [U0LEAD1, "@security-leads", "@nobody-knows"]
      min_approvals: 1
      expires: 5m
      message: Delete the deactivated CI keys
"""


@pytest.fixture(scope="module")
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn() as standin:
        yield standin


def _notifier(slack: SlackStandIn, tmp_path: Path, *, drill: bool) -> StatusNotifier:
    (tmp_path / "gated.yaml").write_text(RUNBOOK)
    registry = default_registry()
    loaded = load_runbook(tmp_path / "gated.yaml", registry)
    plan = compile_plan(loaded.runbook, loaded.path, registry)
    settings = StanchSettings(home=tmp_path, slack_base_url=slack.api_url, slack_token=SecretStr(slack.token),
                              slack_channel="#incident")
    incident = Incident(tmp_path / "store", "INC-SLACK-1" if drill else "INC-SLACK-2")
    return StatusNotifier.from_settings(settings, incident, plan, drill=drill)


def _thread(slack: SlackStandIn, incident: str) -> list[dict[str, object]]:
    header = next(m for m in slack.messages("C0INCIDENT") if not m.get("thread_ts") and incident in json.dumps(m))
    return [m for m in slack.messages("C0INCIDENT", thread_ts=str(header["ts"])) if m["ts"] != header["ts"]]


def test_drill_approval_request_mentions_approvers(slack: SlackStandIn, tmp_path: Path) -> None:
    notifier = _notifier(slack, tmp_path, drill=True)
    notifier.run_link = "http://127.0.0.1:4200/runs/flow-run/0b1c"
    assert notifier.start() is None
    header_msg = next(m for m in slack.messages("C0INCIDENT") if not m.get("thread_ts")
                      and "INC-SLACK-1" in json.dumps(m))
    assert "<http://127.0.0.1:4200/runs/flow-run/0b1c|Prefect run>" in json.dumps(header_msg["blocks"])
    step = notifier.plan.step("approve-delete")
    assert step.approval is not None
    problem = notifier.approval_request(step, step.approval, datetime.now(UTC) + timedelta(minutes=5),
                                        "Delete the deactivated CI keys <!channel>")
    assert problem is None
    request = next(m for m in _thread(slack, "INC-SLACK-1") if "Approval needed" in str(m["text"]))
    shown = json.dumps(request["blocks"])
    assert "<@U0LEAD1>" in shown and "<!subteam^S0SECLEADS>" in shown and "@nobody-knows" in shown
    assert "<@U0LEAD1>" in str(request["text"])  # the notification line pings too
    assert str(request["text"]).startswith("[DRILL]")
    header = next(b for b in request["blocks"] if b["type"] == "header")  # type: ignore[union-attr]
    assert header["text"]["text"].startswith("DRILL")
    assert "&lt;!channel&gt;" in shown and "<!channel>" not in shown  # the message cannot ping
    assert {b["type"] for b in request["blocks"]} >= {"actions"}  # type: ignore[union-attr]
    assert block_problems(request["blocks"]) == []  # type: ignore[arg-type]


def test_step_report_has_no_markdown_table(slack: SlackStandIn, tmp_path: Path) -> None:
    notifier = _notifier(slack, tmp_path, drill=False)
    step = notifier.plan.step("prepare")
    rows = "\n".join(f"| `key-{i}` | deactivated | {'x' * 40} |" for i in range(400))
    report = (f"# {step.title} — SUCCEEDED\n\n| | |\n|---|---|\n| Incident | `INC-SLACK-2` |\n"
              f"| Step | `prepare` |\n\n## Items\n\n| item | status | result |\n|---|---|---|\n{rows}\n")
    assert notifier.step_update(step, "succeeded", report) is None
    posted = [m for m in _thread(slack, "INC-SLACK-2") if m.get("blocks")]
    assert posted
    text = json.dumps([m["blocks"] for m in posted], ensure_ascii=False)
    assert "|---|" not in text and "| Incident |" not in text
    first = posted[0]["blocks"]
    fields = next(b for b in first if b.get("fields"))  # type: ignore[union-attr]
    assert [f["text"] for f in fields["fields"]] == ["*Incident*\n`INC-SLACK-2`", "*Step*\n`prepare`"]
    assert "*item*: `key-0` · *status*: deactivated" in text  # 400 rows: one line each, not 400 blocks
    footer = posted[-1]["blocks"][-1]  # type: ignore[index]
    assert footer["type"] == "context" and footer["elements"][-1]["text"] == "Incident `INC-SLACK-2` · step `prepare`"
    for m in posted:
        assert block_problems(m["blocks"]) == []  # type: ignore[arg-type]


def test_header_says_why_there_is_no_prefect_link(slack: SlackStandIn, tmp_path: Path) -> None:
    """The embedded temporary Prefect server (``stanch run``/``stanch demo`` without PREFECT_API_URL)
    is gone when the command ends: the header says so instead of linking a dead address."""
    from flows.engine.notify import NO_RUN_LINK

    notifier = _notifier(slack, tmp_path, drill=True)
    notifier.incident = Incident(tmp_path / "store", "INC-SLACK-3")
    notifier.run_link, notifier.run_link_note = None, NO_RUN_LINK
    assert notifier.start() is None
    header = next(m for m in slack.messages("C0INCIDENT") if not m.get("thread_ts") and "INC-SLACK-3" in json.dumps(m))
    footer = header["blocks"][-1]  # type: ignore[index]
    assert footer["type"] == "context" and footer["elements"][0]["text"] == NO_RUN_LINK
    assert "/runs/flow-run/" not in json.dumps(header["blocks"]) and "127.0.0.1" not in json.dumps(header["blocks"])
