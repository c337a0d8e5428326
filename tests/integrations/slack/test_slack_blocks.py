"""Block Kit builders: escaping of untrusted text, limits, splitting of long reports."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from integrations.sandbox.slack_standin import SlackStandIn
from integrations.slack import IncidentThread
from integrations.slack.blocks import (
    MAX_BLOCKS,
    MAX_SECTION_TEXT,
    escape,
    header_blocks,
    link,
    markdown_to_mrkdwn,
    mention,
    report_blocks,
    split_mrkdwn,
)
from integrations.slack.client import SlackClient

HOSTILE = "pkg <!channel> see <http://evil|click> & <@U0LEAD1>"


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
