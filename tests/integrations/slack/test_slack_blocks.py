"""Block Kit builders: escaping of untrusted text, limits, splitting of long reports."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from integrations.sandbox.slack_standin import SlackStandIn
from integrations.slack import IncidentThread
from integrations.slack.blocks import (
    MAX_BLOCKS,
    MAX_SECTION_TEXT,
    approval_blocks,
    block_problems,
    escape,
    fit_blocks,
    header_blocks,
    link,
    markdown_blocks,
    markdown_to_mrkdwn,
    mention,
    report_blocks,
    split_mrkdwn,
)
from integrations.slack.client import SlackClient

HOSTILE = "pkg <!channel> see <http://evil|click> & <@U0LEAD1>"
GOLDEN = Path(__file__).parent / "golden"
CORPUS = Path(__file__).parents[2] / "hostile" / "slack-blocks"


def _texts(blocks: list[dict[str, Any]]) -> list[str]:
    out = []
    for b in blocks:
        if isinstance(b.get("text"), dict):
            out.append(b["text"]["text"])
        out += [f["text"] for f in b.get("fields", []) + b.get("elements", [])]
    return out


def test_escape_only_the_three_control_characters() -> None:
    assert escape("a&b <@U1> <!channel> 5 > 3 'q'") == "a&amp;b &lt;@U1&gt; &lt;!channel&gt; 5 &gt; 3 'q'"
    assert escape("<http://evil|click>") == "&lt;http://evil|click&gt;"
    assert escape("&amp;") == "&amp;amp;"


def test_intended_syntax_helpers() -> None:
    assert mention("U0LEAD1") == "<@U0LEAD1>"
    assert mention("S0SECLEADS") == "<!subteam^S0SECLEADS>"
    assert mention("here") == "<!here>"
    with pytest.raises(ValueError):
        mention("<!channel>")
    assert link("https://x.example/a?b=1&c=2", "run <1>") == "<https://x.example/a?b=1&amp;c=2|run &lt;1&gt;>"
    assert "<" not in link("javascript:alert(1)", "x")


def test_report_escapes_untrusted_text_everywhere() -> None:
    messages = report_blocks(
        HOSTILE, f"# Scope\n- {HOSTILE}\n[click](http://evil)", HOSTILE, {HOSTILE: HOSTILE}
    )
    # plain_text (the header) is never parsed for mentions or links; every mrkdwn text is escaped
    assert messages[0][0]["text"]["type"] == "plain_text"
    texts = [t for m in messages for b in m if b["type"] != "header" for t in _texts([b])]
    joined = "\n".join(texts)
    assert "<!channel>" not in joined and "<http://evil|click>" not in joined and "<@U0LEAD1>" not in joined
    assert "&lt;!channel&gt;" in joined and "&lt;http://evil|click&gt;" in joined
    assert "click (http://evil)" in joined  # markdown links cannot disguise their target
    assert "<" not in joined.replace("&lt;", "")


def test_markdown_conversion() -> None:
    md = "## Heading\n**bold** and ~~gone~~\n- item\n```\n<code> **not bold**\n```"
    assert markdown_to_mrkdwn(md).split("\n") == [
        "*Heading*",
        "*bold* and ~gone~",
        "• item",
        "```",
        "&lt;code&gt; **not bold**",
        "```",
    ]


def test_inline_code_is_kept_verbatim() -> None:
    """`__x__` inside inline code used to become `*x*`; only text outside code spans is converted."""
    md = "call `__init__` or ``a `__b__` c``, **bold** `**raw**` __under__\n- `~~keep~~` ~~gone~~ [l](http://u)"
    assert markdown_to_mrkdwn(md).split("\n") == [
        "call `__init__` or ``a `__b__` c``, *bold* `**raw**` *under*",
        "• `~~keep~~` ~gone~ l (http://u)",
    ]
    assert markdown_to_mrkdwn("# Title `__x__`") == "*Title `__x__`*"


def _assert_limits(messages: list[list[dict[str, Any]]]) -> None:
    for msg in messages:
        assert 0 < len(msg) <= MAX_BLOCKS
        for block in msg:
            if block["type"] == "section" and "text" in block:
                assert 0 < len(block["text"]["text"]) <= MAX_SECTION_TEXT


def test_ten_thousand_char_report_respects_limits() -> None:
    para = "Deactivated access key AKIA… for ci-user in account 111122223333 & rotated <secret id>.\n"
    md = "# Report\n" + para * (10_000 // len(para) + 1)
    assert len(md) > 10_000
    messages = report_blocks("revoke-ci-keys", md, "succeeded", {"keys": "112"})
    _assert_limits(messages)
    body = "".join(b["text"]["text"] for m in messages for b in m if b["type"] == "section" and "text" in b)
    assert body.count("&lt;secret id&gt;") == md.count("<secret id>")  # nothing lost, nothing cut mid-entity
    assert messages[0][0]["type"] == "header"
    assert all(m[0]["type"] == "context" and "continued" in m[0]["elements"][0]["text"] for m in messages[1:])


def test_one_giant_line_and_huge_report_are_split_and_truncated() -> None:
    _assert_limits(report_blocks("t", "x" * 10_000, "failed"))
    huge = report_blocks("t", ("&<>" * 50 + "\n") * 5000, "failed", max_messages=3)
    assert len(huge) == 3
    _assert_limits(huge)
    assert "truncated" in huge[-1][-1]["elements"][0]["text"]
    for m in huge:
        for t in _texts(m):
            assert not t.endswith("&") and not t.endswith("&am")


def test_many_small_sections_stay_under_fifty_blocks() -> None:
    messages = report_blocks("t", "\n\n".join(f"line {i}" for i in range(2000)), "ok", max_chars=10**9)
    _assert_limits(messages)


def test_code_fences_are_balanced_after_splitting() -> None:
    text = "```\n" + "\n".join(f"trace line {i}" for i in range(1000)) + "\n```"
    chunks = split_mrkdwn(text, 3000)
    assert len(chunks) > 1
    for chunk in chunks:
        assert len(chunk) <= 3000
        assert chunk.count("```") % 2 == 0


def test_header_blocks_with_many_steps_fit_one_message() -> None:
    steps = [(f"step-{i}", "succeeded", "x" * 80) for i in range(1000)]
    blocks = header_blocks(
        "INC-7",
        HOSTILE,
        "sev1",
        "containing",
        steps,
        drill=True,
        updated_at=datetime(2026, 4, 1, tzinfo=UTC),
        links=[("Prefect run", "http://127.0.0.1/r")],
    )
    _assert_limits([blocks])
    joined = "\n".join(t for b in blocks if b["type"] != "header" for t in _texts([b]))
    assert "DRILL" in joined and "more steps" in joined and "<!channel>" not in joined
    assert sum(len(t) for t in _texts(blocks)) <= 12_000
    assert len(blocks[1]["text"]["text"]) <= 150


def test_stand_in_accepts_every_generated_message(standin: SlackStandIn, client: SlackClient) -> None:
    thread = IncidentThread(client, "#incident")
    steps = [(f"s{i}", "running") for i in range(300)]
    thread.start("hdr", header_blocks("INC-9", "t", "sev2", "open", steps))
    ts = thread.post_report("big", ("<!here> & log line\n" * 3000), "failed", {"a": "b"}, drill=True)
    assert len(ts) > 1
    assert all(c["ok"] for c in standin.calls())


def test_block_problems_and_fit_blocks_respect_block_kit_limits() -> None:
    from integrations.slack.blocks import TRUNCATED_NOTE, block_problems, fit_blocks

    too_big = [
        {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "s" * 3001}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}] * 11},
        {"type": "context", "elements": []},
    ] + [{"type": "section", "text": {"type": "mrkdwn", "text": "ok"}}] * 60
    problems = block_problems(too_big)
    assert any("64 blocks" in p for p in problems)
    assert any("block 0: header of 151" in p for p in problems)
    assert any("block 1: section text of 3001" in p for p in problems)
    assert any("block 2: 11 fields" in p for p in problems) and any("field 0 of 2001" in p for p in problems)
    assert any("block 3: context with 0" in p for p in problems)
    fitted = fit_blocks(too_big)
    assert block_problems(fitted) == [] and len(fitted) == 50
    assert TRUNCATED_NOTE in json.dumps(fitted[-1], ensure_ascii=False)
    ok = [{"type": "section", "text": {"type": "mrkdwn", "text": "fine"}}]
    assert block_problems(ok) == [] and fit_blocks(ok) == ok


def test_markdown_tables_become_lists_and_approvers_are_mentioned() -> None:
    from integrations.slack.blocks import approver_mention

    md = ("| | |\n|---|---|\n| Step | `a\\|b` |\n\n| k | v | w |\n|:--|--:|---|\n| 1 | 2 | 3 |\n"
          "```\n| a | b |\n|---|---|\n```")
    out = markdown_to_mrkdwn(md)
    assert "• *Step* — `a|b`" in out and "• *k*: 1 · *v*: 2 · *w*: 3" in out
    assert out.count("|---|") == 1  # only inside the code fence
    assert approver_mention("U0LEAD1") == "<@U0LEAD1>"
    assert approver_mention("@leads", {"leads": "S0LEADS"}) == "<!subteam^S0LEADS>"
    assert approver_mention("@leads") == "@leads"
    assert approver_mention("<!channel>") == "&lt;!channel&gt;"


def _render(messages: list[list[dict[str, Any]]]) -> str:
    """Messages as a person reads them, one line per block (the golden file's form)."""
    out = []
    for k, msg in enumerate(messages, start=1):
        out.append(f"=== message {k} ({len(msg)} blocks)")
        for b in msg:
            if b["type"] == "section" and b.get("fields"):
                out.append("[fields] " + " ‖ ".join(f["text"].replace("\n", " ⏎ ") for f in b["fields"]))
            elif b["type"] == "section":
                out.append("[section] " + b["text"]["text"].replace("\n", "\n          "))
            elif b["type"] in ("header",):
                out.append(f"[header] {b['text']['text']}")
            elif b["type"] == "context":
                out.append("[context] " + " ‖ ".join(e["text"] for e in b["elements"]))
            else:
                out.append(f"[{b['type']}]")
    return "\n".join(out) + "\n"


def test_step_report_blocks_golden() -> None:
    """A real step report (default template: DRILL quote, title heading, key/value table, items
    table, a failure, a code block, a footnote after ---) as Block Kit, held against a golden file:
    the title once (header), DRILL once (banner) plus the footer, key/value rows as section
    fields, items as one section of fields per row, ``---`` as a divider (a footnote as the
    context footer with incident, step, DRILL), quotes never escaped twice, no Markdown table."""
    md = (GOLDEN / "step-report.md").read_text(encoding="utf-8")
    messages = report_blocks("Deactivate the CI access keys of affected services", md, "failed",
                             drill=True, incident="INC-GOLDEN-1", step="revoke-ci-keys")
    got = _render(messages)
    path = GOLDEN / "step-report.blocks.txt"
    if os.environ.get("STANCH_UPDATE_GOLDEN"):
        path.write_text(got, encoding="utf-8")
    assert got == path.read_text(encoding="utf-8")
    (msg,) = messages
    assert block_problems(msg) == []
    assert got.count("Deactivate the CI access keys of affected services") == 1
    assert "&gt; *DRILL*" not in got and "&amp;" not in got.replace("ci-desktop-app &amp; ci-web", "")
    assert [b["type"] for b in msg][:4] == ["context", "header", "context", "divider"]
    kv = next(b for b in msg if b.get("fields"))
    assert [f["text"].split("\n")[0] for f in kv["fields"]] == ["*Incident*", "*Step*", "*Started*", "*Finished*",
                                                                "*Attempts*"]
    footer = msg[-1]
    assert footer["type"] == "context" and [e["text"] for e in footer["elements"]] == [
        "Advisory: `MAL-2026-2307` · runbook `compromised-dependency` · incident `INC-GOLDEN-1`",
        "Incident `INC-GOLDEN-1` · step `revoke-ci-keys` · :test_tube: DRILL"]
    texts = "\n".join(_texts(msg))
    assert not re.search(r"^\s*\|.*\|\s*$", texts.split("```")[0] + texts.split("```")[-1], re.M)


def test_report_of_a_live_run_has_no_drill_and_the_title_once() -> None:
    md = "# Scope — SUCCEEDED\n\n| | |\n|---|---|\n| a | b |\n\n> a real quote & more\n"
    (msg,) = report_blocks("Scope", md, "succeeded", incident="INC-1", step="scope")
    texts = _texts(msg)
    assert "DRILL" not in json.dumps(msg) and sum("Scope" in t for t in texts) == 1
    assert "> a real quote &amp; more" in texts
    assert msg[-1]["elements"][0]["text"] == "Incident `INC-1` · step `scope`"


def test_a_divider_collapses_and_a_long_table_is_one_line_per_row() -> None:
    rows = "".join(f"| `svc-{i}` | ok | r{i} |\n" for i in range(40))
    blocks = markdown_blocks("a\n\n---\n***\n___\n\n| item | status | result |\n|---|---|---|\n" + rows)
    assert [b["type"] for b in blocks][:3] == ["section", "divider", "section"]
    assert "• *item*: `svc-39` · *status*: ok · *result*: r39" in blocks[2]["text"]["text"]


@pytest.mark.parametrize("case", sorted(p.name for p in CORPUS.glob("*.json")))
def test_hostile_block_kit_payloads_are_caught(case: str) -> None:
    spec = json.loads((CORPUS / case).read_text())
    blocks = spec["blocks"] * spec.get("repeat", 1)
    assert block_problems(blocks) == spec["problems"]
    if spec["fit_fixes"]:
        fitted = fit_blocks(blocks)
        assert block_problems(fitted) == [] and "truncated" in json.dumps(fitted[-1])


@pytest.mark.parametrize("case", sorted(p.name for p in (CORPUS / "reports").glob("*.json")))
def test_hostile_reports_stay_within_block_kit(case: str) -> None:
    spec = json.loads((CORPUS / "reports" / case).read_text())
    md = spec["markdown"]
    if spec.get("repeat_line"):
        *head, last = md.rstrip("\n").split("\n")
        md = "\n".join([*head, *(last.format(i=i) for i in range(spec["repeat_line"]))]) + "\n"
    messages = report_blocks(spec.get("title", "Report"), md, "succeeded", drill=True, incident="INC-H", step="s")
    joined = "\n".join(t for m in messages for b in m if b["type"] != "header" for t in _texts([b]))
    for msg in messages:
        assert block_problems(msg) == [], block_problems(msg)
    outside_code = "".join(joined.split("```")[::2])
    assert not re.search(r"^\s*\|.*\|\s*$", outside_code, re.M)  # no raw Markdown table
    assert "<" not in joined.replace("&lt;", "")  # nothing live: no mention, no link
    for text in spec["contains"]:
        assert text in joined, (text, joined[:2000])
    for text in spec.get("absent", []):
        assert text not in joined
    if spec.get("no_divider"):
        assert not [b for m in messages for b in m if b["type"] == "divider" and m.index(b) > 3]


def test_approval_blocks_with_the_longest_ids_are_within_limits() -> None:
    fallback, blocks = approval_blocks("s" * 63, HOSTILE * 100, ["U0LEAD1", "@security-leads"], 2,
                                   datetime(2026, 4, 1, tzinfo=UTC),
                                   json.dumps({"incident": "INC-" + "x" * 120, "step": "s" * 63}), drill=True)
    assert block_problems(blocks) == [] and fallback.startswith("[DRILL] Approval needed")
    actions = blocks[-1]
    assert actions["type"] == "actions" and {e["action_id"] for e in actions["elements"]} == {
        "stanch_approve", "stanch_deny"}
