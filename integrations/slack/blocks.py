"""Block Kit builders for stanch's Slack messages.

Owns: escaping untrusted text for Slack mrkdwn (``escape``), the only ways to emit intended
Slack syntax (``mention``, ``link``), markdown -> Block Kit conversion of status reports (tables
as section fields, ``---`` as dividers, a context footer; ``markdown_blocks``), checking blocks
against Block Kit's limits (``block_problems``, ``fit_blocks``), and
splitting long reports into messages that respect Slack's limits (3,000 chars per section text,
10 fields of 2,000 chars, 150-char headers, 50 blocks per message, and a conservative 12,000
characters of text per message -- Slack rejects some messages well below 50 full sections with
``msg_blocks_too_long``). Also the incident header that the engine edits with ``chat.update``.

Everything here is pure (no I/O): it returns lists of block dicts. Must not touch: ``flows``,
``prefect``, the network. All text coming from runbooks, advisories, inventories and step
outputs is treated as untrusted and escaped: a report can never ping ``<!channel>`` or hide a
link behind a label.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from itertools import zip_longest
from typing import Any
from urllib.parse import urlsplit

from slack_sdk.models.blocks import (
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

__all__ = [
    "MAX_BLOCKS",
    "MAX_FIELDS",
    "MAX_FIELD_TEXT",
    "MAX_HEADER_TEXT",
    "MAX_MESSAGE_CHARS",
    "MAX_SECTION_TEXT",
    "TRUNCATED_NOTE",
    "StepLine",
    "approval_blocks",
    "approver_mention",
    "block_problems",
    "escape",
    "fit_blocks",
    "header_blocks",
    "header_text",
    "link",
    "markdown_blocks",
    "markdown_to_mrkdwn",
    "mention",
    "report_blocks",
    "split_mrkdwn",
    "status_emoji",
    "text_blocks",
]

MAX_SECTION_TEXT = 3000
MAX_BLOCKS = 50
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_MESSAGE_CHARS = 12000
ELLIPSIS = "…"
DRILL_BANNER = ":test_tube: *DRILL* — sandbox only; nothing real was changed"
TRUNCATED_NOTE = "(truncated — full report in the incident record)"
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_BUTTON_URL = 3000
MAX_ID = 255  # block_id, action_id

StepLine = str | tuple[str, str] | tuple[str, str, str]
"""A header step line: preformatted (escaped) text, or ``(step_id, state[, detail])``."""

_STATUS_EMOJI = {
    "pending": ":white_circle:",
    "planned": ":white_circle:",
    "running": ":arrows_counterclockwise:",
    "started": ":arrows_counterclockwise:",
    "retrying": ":repeat:",
    "awaiting_approval": ":hourglass_flowing_sand:",
    "approval_requested": ":hourglass_flowing_sand:",
    "approved": ":white_check_mark:",
    "succeeded": ":white_check_mark:",
    "completed": ":white_check_mark:",
    "contained": ":white_check_mark:",
    "skipped": ":fast_forward:",
    "failed": ":x:",
    "denied": ":no_entry:",
    "expired": ":alarm_clock:",
    "compensating": ":leftwards_arrow_with_hook:",
    "compensated": ":leftwards_arrow_with_hook:",
    "aborted": ":octagonal_sign:",
    "cancelled": ":octagonal_sign:",
}
_SEVERITY_EMOJI = {
    "sev0": ":rotating_light:",
    "sev1": ":rotating_light:",
    "sev2": ":warning:",
    "sev3": ":large_yellow_circle:",
    "sev4": ":information_source:",
}

_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")


def escape(text: object) -> str:
    """Escape Slack's three mrkdwn control characters (``&`` first). For every untrusted string."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mention(target: str) -> str:
    """Intended mention syntax: ``U…``/``W…`` users, ``S…`` user groups, ``here``/``channel``."""
    if _USER_ID.match(target):
        return f"<@{target}>"
    if _GROUP_ID.match(target):
        return f"<!subteam^{target}>"
    if target in ("here", "channel", "everyone"):
        return f"<!{target}>"
    raise ValueError(f"not a Slack user or user group id: {target!r}")


def link(url: str, label: str | None = None) -> str:
    """An intended link; only http(s) URLs. The label is escaped and cannot contain markup."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c in url for c in "<>| \n"):
        return escape(url if label is None else f"{label} ({url})")
    safe_url = url.replace("&", "&amp;")
    if label is None:
        return f"<{safe_url}>"
    return f"<{safe_url}|{escape(label).replace('|', '¦')}>"


def status_emoji(status: str) -> str:
    return _STATUS_EMOJI.get(status.lower().replace(" ", "_").replace("-", "_"), ":grey_question:")


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = limit - len(ELLIPSIS)
    amp = text.rfind("&", max(0, cut - 6), cut)  # never cut an &entity; in half
    if amp != -1 and ";" not in text[amp:cut]:
        cut = amp
    return text[:cut] + ELLIPSIS


# ---------------------------------------------------------------------- markdown -> mrkdwn
_FENCE = re.compile(r"^\s*```")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_MD_LINK = re.compile(r"\[([^\]\n]+)\]\(([^)\s]+)\)")
_BULLET = re.compile(r"^(\s*)[-*+]\s+")
_INLINE_CODE = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)")


def _outside_code(line: str, fn: Callable[[str], str]) -> str:
    """Apply ``fn`` to the parts of ``line`` that are not inline code spans (kept verbatim)."""
    out: list[str] = []
    pos = 0
    for m in _INLINE_CODE.finditer(line):
        out.append(fn(line[pos:m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(fn(line[pos:]))
    return "".join(out)


def _inline(text: str) -> str:
    text = _BOLD.sub(lambda mm: f"*{mm.group(1) or mm.group(2)}*", text)
    text = _STRIKE.sub(r"~\1~", text)
    return _MD_LINK.sub(lambda mm: f"{mm.group(1)} ({mm.group(2)})", text)


_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_THEMATIC_BREAK = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")
_QUOTE = re.compile(r"^(\s{0,3})&gt;[ ]?")  # a markdown blockquote, after escaping
ROWS_AS_SECTIONS = 10
"""A table of at most this many rows shows one section (with fields) per row; a longer one one
line per row (a fan-out of 200 items must not become 200 blocks)."""


def _cells(row: str) -> list[str]:
    inner = row.strip()[1:-1]
    cells = re.split(r"(?<!\\)\|", inner)
    return [c.strip().replace("\\|", "|") for c in cells]


def _table_at(lines: list[str], i: int) -> bool:
    return (_TABLE_ROW.match(lines[i]) is not None and i + 1 < len(lines)
            and _TABLE_RULE.match(lines[i + 1]) is not None and "|" in lines[i + 1])


def _row_line(head: list[str], cells: list[str]) -> str:
    """One table row as one markdown bullet line (the flat form of a table)."""
    if len(head) == 2 and len(cells) >= 2:
        return f"- **{cells[0] or '-'}** — {' | '.join(cells[1:]) or '-'}"
    pairs = [f"**{h}**: {c}" if h else c for h, c in zip_longest(head, cells, fillvalue="") if c]
    return "- " + " · ".join(pairs or ["-"])


def _tables_to_lists(lines: list[str]) -> list[str]:
    """GitHub-flavoured tables (header row, ``|---|`` rule, rows) as one bullet line per row:
    two columns -> ``• *first* — second``; more -> ``• *h1*: v1 · *h2*: v2 …``. Slack shows a
    markdown table as raw ``|`` characters, so none survives into mrkdwn."""
    out: list[str] = []
    i = 0
    in_code = False
    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            in_code = not in_code
        if not in_code and _table_at(lines, i):
            head = _cells(line)
            i += 2
            while i < len(lines) and _TABLE_ROW.match(lines[i]):
                out.append(_row_line(head, _cells(lines[i])))
                i += 1
            continue
        out.append(line)
        i += 1
    return out


def _mrkdwn_line(line: str) -> str:
    """One line of escaped markdown outside code fences as mrkdwn: heading -> bold, inline
    markup, bullets, and a blockquote's escaped ``&gt;`` back to Slack's ``>`` quote marker."""
    quote = ""
    m = _QUOTE.match(line)
    if m:
        quote, line = "> ", line[m.end():]
    m = _HEADING.match(line)
    if m:
        line = f"*{m.group(1)}*" if m.group(1) else ""
    line = _outside_code(line, _inline)  # `__x__` in inline code stays as typed
    line = _BULLET.sub(lambda mm: f"{mm.group(1)}• ", line)
    return quote + line


def markdown_to_mrkdwn(markdown: str) -> str:
    """Render a (GitHub-flavoured) markdown report as Slack mrkdwn text, escaping all of it first.

    Headings and ``**bold**`` become ``*bold*``, ``~~x~~`` -> ``~x~``, bullets -> ``•``, ``> quote``
    stays a Slack quote; a markdown link ``[label](url)`` is shown as ``label (url)`` so a label can
    never disguise where it goes. Code fences and inline code spans are kept verbatim (escaped).
    Slack mentions in the input are neutralised. Tables become one line per row; for Block Kit
    (fields, dividers, a context footer) use ``markdown_blocks``.
    """
    out: list[str] = []
    in_code = False
    for line in _tables_to_lists(escape(markdown.replace("\r\n", "\n")).split("\n")):
        if _FENCE.match(line):
            in_code = not in_code
            out.append(line.strip())
            continue
        out.append(line if in_code else _mrkdwn_line(line))
    return "\n".join(out).strip("\n")


def _plain(text: str) -> str:
    """Text without mrkdwn markers, for comparing a heading with a title."""
    return " ".join(re.sub(r"[*_~`]", "", text).split()).lower()


def _field_text(key: str, value: str) -> str:
    """A section field: bold label over its value (both already mrkdwn)."""
    key, value = key.strip(), value.strip()
    if key and not (key.startswith("*") and key.endswith("*") and len(key) > 1):
        key = f"*{key}*"
    if not key:
        return _truncate(value or "—", MAX_FIELD_TEXT)
    return _truncate(f"{key}\n{value or '—'}", MAX_FIELD_TEXT)


def _fields_sections(texts: Sequence[str]) -> list[dict[str, Any]]:
    return [SectionBlock(fields=[MarkdownTextObject(text=t) for t in texts[i : i + MAX_FIELDS]]).to_dict()
            for i in range(0, len(texts), MAX_FIELDS)]


def _table_blocks(head: list[str], rows: list[list[str]], section_limit: int) -> list[dict[str, Any]]:
    """A markdown table (cells already escaped) as Block Kit: two columns are label/value pairs
    -> section fields (10 per section); wider tables -> one section of fields per row (label: the
    column header), or one line per row beyond ``ROWS_AS_SECTIONS`` rows."""
    conv = [[_outside_code(c, _inline) for c in row] for row in rows]
    names = [_outside_code(h, _inline) for h in head]
    if len(head) == 2:  # cells beyond the second (an unescaped | in a value) are kept, not dropped
        return _fields_sections([_field_text(r[0] if r else "", " | ".join(r[1:])) for r in conv])
    if len(conv) <= ROWS_AS_SECTIONS:
        out: list[dict[str, Any]] = []
        for row in conv:
            pairs = [(h, c) for h, c in zip_longest(names, row, fillvalue="") if c]
            if len(pairs) > MAX_FIELDS:  # more columns than fields: the rest share the last field
                rest = " · ".join(f"*{h}*: {c}" if h else c for h, c in pairs[MAX_FIELDS - 1:])
                pairs = [*pairs[: MAX_FIELDS - 1], ("", rest)]
            if pairs:
                out.extend(_fields_sections([_field_text(h, c) for h, c in pairs]))
        return out
    text = "\n".join(_mrkdwn_line(_row_line(head, row)) for row in rows)
    return [_section(c) for c in split_mrkdwn(text, section_limit)]


def markdown_blocks(markdown: str, *, title: str | None = None, drill: bool = False,
                    section_limit: int = MAX_SECTION_TEXT) -> list[dict[str, Any]]:
    """A markdown report as Block Kit blocks, all of its text escaped first.

    Tables -> section fields (``_table_blocks``), a ``---`` line -> a divider, a short paragraph
    after the report's last ``---`` -> a context block (its footnote), everything else -> mrkdwn
    sections (``markdown_to_mrkdwn`` rules, split at ``section_limit``). With ``title``, a first
    heading that repeats it is dropped (the message's header shows it); with ``drill``, a leading
    blockquote saying DRILL is dropped (the drill banner says it)."""
    lines = escape(markdown.replace("\r\n", "\n")).split("\n")
    parts: list[tuple[str, Any]] = []  # ("text", [lines]) | ("blocks", [blocks]) | ("divider", None)
    text: list[str] = []
    seen_content = False

    def flush() -> None:
        nonlocal text
        if any(t.strip() for t in text):
            parts.append(("text", text))
        text = []

    i = 0
    in_code = False
    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            in_code = not in_code
            text.append(line.strip())
            seen_content = True
            i += 1
            continue
        if in_code:
            text.append(line)
            i += 1
            continue
        if _table_at(lines, i):
            flush()
            head = _cells(line)
            i += 2
            rows = []
            while i < len(lines) and _TABLE_ROW.match(lines[i]):
                rows.append(_cells(lines[i]))
                i += 1
            parts.append(("blocks", _table_blocks(head, rows, section_limit)))
            seen_content = True
            continue
        if _THEMATIC_BREAK.match(line):
            flush()
            parts.append(("divider", None))
            i += 1
            continue
        if not seen_content and drill and _QUOTE.match(line) and "DRILL" in line:
            while i < len(lines) and _QUOTE.match(lines[i]):  # the whole leading DRILL quote
                i += 1
            continue
        heading = _HEADING.match(line)
        if (not seen_content and heading and title is not None and line.lstrip().startswith("# ")
                and _plain(heading.group(1)).startswith(_plain(escape(title)))):
            i += 1
            seen_content = True
            continue
        if line.strip():
            seen_content = True
        text.append(_mrkdwn_line(line))
        i += 1
    flush()

    footnote: str | None = None
    if len(parts) >= 2 and parts[-1][0] == "text" and parts[-2][0] == "divider":
        body = "\n".join(parts[-1][1]).strip()
        if len(body) <= 600 and body.count("\n") < 3:
            footnote = body
            parts = parts[:-2]
    blocks: list[dict[str, Any]] = []
    for kind, value in parts:
        if kind == "divider":
            if blocks and blocks[-1]["type"] != "divider":
                blocks.append(DividerBlock().to_dict())
        elif kind == "blocks":
            blocks.extend(value)
        else:
            blocks.extend(_section(c) for c in split_mrkdwn("\n".join(value).strip("\n"), section_limit))
    while blocks and blocks[-1]["type"] == "divider":
        blocks.pop()
    if footnote:
        blocks.append(_context(footnote))
    return blocks


def split_mrkdwn(text: str, limit: int = MAX_SECTION_TEXT) -> list[str]:
    """Split already-escaped mrkdwn into chunks of at most ``limit`` characters.

    Prefers line boundaries; hard-cuts overlong lines without splitting an ``&entity;``; a chunk
    that ends inside a code fence is closed with ``` and the next one reopens it.
    """
    if limit < 64:
        raise ValueError("limit too small")
    budget = limit - 8  # room to close/reopen a code fence
    chunks: list[str] = []
    buf: list[str] = []
    size = 0
    in_code = False  # fence state at the end of buf
    open_at_start = False  # buf starts inside a fence

    def flush() -> None:
        nonlocal buf, size, open_at_start
        body = "\n".join(buf)
        if body.strip() and body.strip() != "```":
            if open_at_start:
                body = "```\n" + body
            if in_code:
                body += "\n```"
            chunks.append(body)
        buf, size, open_at_start = [], 0, in_code

    for line in text.split("\n"):
        pieces: list[str] = []
        while len(line) > budget:
            cut = budget
            amp = line.rfind("&", max(0, cut - 6), cut)
            if amp != -1 and ";" not in line[amp:cut]:
                cut = amp
            space = line.rfind(" ", budget // 2, cut)
            if space != -1:
                cut = space + 1
            pieces.append(line[:cut])
            line = line[cut:]
        pieces.append(line)
        for piece in pieces:
            extra = len(piece) + (1 if buf else 0)
            if buf and size + extra > budget:
                flush()
                extra = len(piece)
            buf.append(piece)
            size += extra
            if _FENCE.match(piece):
                in_code = not in_code
    flush()
    return chunks


def _section(text: str) -> dict[str, Any]:
    return SectionBlock(text=MarkdownTextObject(text=text)).to_dict()


def _context(*texts: str) -> dict[str, Any]:
    return ContextBlock(
        elements=[MarkdownTextObject(text=_truncate(t, MAX_SECTION_TEXT)) for t in texts]
    ).to_dict()


def _header(text: str) -> dict[str, Any]:
    return HeaderBlock(
        text=PlainTextObject(text=_truncate(" ".join(text.split()) or "-", MAX_HEADER_TEXT))
    ).to_dict()


def _field_sections(
    fields: Mapping[str, object] | Sequence[tuple[str, object]] | None,
) -> list[dict[str, Any]]:
    items = list(fields.items()) if isinstance(fields, Mapping) else list(fields or [])
    rendered = [_truncate(f"*{escape(k)}*\n{escape(v)}", MAX_FIELD_TEXT) for k, v in items]
    return [
        SectionBlock(fields=[MarkdownTextObject(text=t) for t in rendered[i : i + MAX_FIELDS]]).to_dict()
        for i in range(0, len(rendered), MAX_FIELDS)
    ]


def _block_chars(block: dict[str, Any]) -> int:
    total = 0
    text = block.get("text")
    if isinstance(text, dict):
        total += len(str(text.get("text", "")))
    for item in block.get("fields", []) + block.get("elements", []):
        if isinstance(item, dict):
            total += len(str(item.get("text", "")))
    return total


def text_blocks(text: str, *, limit: int = MAX_SECTION_TEXT) -> list[dict[str, Any]]:
    """Untrusted plain text as escaped section blocks (for short notices; may exceed one message)."""
    return [_section(chunk) for chunk in split_mrkdwn(escape(text), limit)]


def report_blocks(
    title: str,
    markdown: str,
    status: str,
    fields: Mapping[str, object] | Sequence[tuple[str, object]] | None = None,
    *,
    drill: bool = False,
    incident: str | None = None,
    step: str | None = None,
    max_blocks: int = MAX_BLOCKS,
    max_chars: int = MAX_MESSAGE_CHARS,
    max_messages: int = 10,
) -> list[list[dict[str, Any]]]:
    """A markdown status report as one or more messages' blocks (post them in order, in the thread).

    Message 1: [drill banner], header (title), status context, ``fields`` (section fields), divider,
    then the report as Block Kit (``markdown_blocks``: its key/value tables as section fields, its
    ``---`` as dividers, its title heading and DRILL quote dropped as repeats). The last message ends
    with a context footer: the report's footnote, then incident · step · DRILL. Later messages start
    with a "continued (k/n)" context. Every section text is <= 3,000 chars, every message
    <= ``max_blocks`` blocks and <= ``max_chars`` characters of text. Beyond ``max_messages`` the
    report is truncated with a note (the full report is in the incident folder).
    """
    if max_blocks < 5 or max_messages < 1:
        raise ValueError("max_blocks must be >= 5 and max_messages >= 1")
    head: list[dict[str, Any]] = []
    if drill:
        head.append(_context(DRILL_BANNER))
    head.append(_header(title))
    head.append(_context(f"{status_emoji(status)} *{escape(status)}*"))
    head.extend(_field_sections(fields))
    head.append(DividerBlock().to_dict())
    section_limit = min(MAX_SECTION_TEXT, max(256, max_chars // 3))
    body = markdown_blocks(markdown, title=title, drill=drill, section_limit=section_limit)
    footer_texts: list[str] = []
    if body and body[-1]["type"] == "context":  # the report's own footnote joins the footer
        footer_texts = [e["text"] for e in body.pop()["elements"]]
    where = [f"Incident `{escape(incident)}`" if incident else "", f"step `{escape(step)}`" if step else "",
             ":test_tube: DRILL" if drill else ""]
    if any(where):
        footer_texts.append(" · ".join(w for w in where if w))
    footer = _context(*footer_texts) if footer_texts else None
    reserve = 300 + (_block_chars(footer) if footer else 0)  # continuation / truncation note, footer

    messages: list[list[dict[str, Any]]] = []
    current = list(head)
    chars = sum(_block_chars(b) for b in current)
    truncated_from: int | None = None
    for i, block in enumerate(body):
        size = _block_chars(block)
        if len(current) + 1 > max_blocks - 2 or chars + size > max_chars - reserve:
            if len(messages) + 1 >= max_messages:
                truncated_from = i
                break
            messages.append(current)
            current = [{"type": "context", "elements": []}]  # continuation placeholder
            chars = 300
        current.append(block)
        chars += size
    messages.append(current)

    if truncated_from is not None:
        dropped = sum(_block_chars(b) for b in body[truncated_from:])
        messages[-1].append(
            _context(
                f":scissors: _report truncated here: {dropped:,} more characters; the full report is in the "
                "incident folder_"
            )
        )
    if footer is not None:
        messages[-1].append(footer)
    total = len(messages)
    safe_title = escape(" ".join(title.split()))
    for k, msg in enumerate(messages[1:], start=2):
        note = f"*{_truncate(safe_title, 200)}* — continued ({k}/{total})"
        if drill:
            note = ":test_tube: *DRILL* · " + note
        msg[0] = _context(note)
    return messages


def header_text(incident_id: str, title: str, severity: str, status: str, *, drill: bool = False) -> str:
    """The plain ``text`` fallback (notification line) of the incident header."""
    prefix = "[DRILL] " if drill else ""
    return escape(f"{prefix}[{severity.upper()}] {title} — {status} ({incident_id})")


def _step_line(step: StepLine) -> str:
    if isinstance(step, str):
        return escape(step)
    step_id, state = step[0], step[1]
    line = f"{status_emoji(state)} `{escape(step_id)}` {escape(state)}"
    if len(step) > 2:
        line += f" — {escape(step[2])}"
    return line


def header_blocks(
    incident_id: str,
    title: str,
    severity: str,
    status: str,
    steps: Sequence[StepLine] = (),
    *,
    drill: bool = False,
    updated_at: datetime | None = None,
    links: Sequence[tuple[str, str]] = (),
    note: str | None = None,
) -> list[dict[str, Any]]:
    """The incident header message (posted once, then edited in place with ``chat.update``).

    ``steps`` are one line each: ``(step_id, state[, detail])`` or a preformatted string (escaped).
    ``links`` are ``(label, url)`` pairs (e.g. the Prefect flow run); ``note`` is a line of plain
    text for the footer (escaped; e.g. why there is no Prefect link). Always a single message.
    """
    blocks: list[dict[str, Any]] = []
    if drill:
        blocks.append(_context(DRILL_BANNER))
    sev_emoji = _SEVERITY_EMOJI.get(severity.lower(), ":rotating_light:")
    blocks.append(_header(f"{'DRILL · ' if drill else ''}{severity.upper()} · {title}"))
    blocks.extend(
        _field_sections(
            [
                ("Incident", incident_id),
                ("Severity", severity.upper()),
                ("Status", status),
            ]
        )
    )
    blocks[-1]["fields"][1]["text"] = f"*Severity*\n{sev_emoji} {escape(severity.upper())}"
    blocks[-1]["fields"][2]["text"] = f"*Status*\n{status_emoji(status)} {escape(status)}"

    lines = [_step_line(s) for s in steps]
    room = MAX_BLOCKS - len(blocks) - 3
    budget = MAX_MESSAGE_CHARS - 2000 - sum(_block_chars(b) for b in blocks)
    sections: list[str] = []
    shown_lines = 0
    for chunk in split_mrkdwn("\n".join(lines), MAX_SECTION_TEXT) if lines else []:
        if len(sections) + 1 >= room or budget - len(chunk) < 0:
            break
        sections.append(chunk)
        budget -= len(chunk)
        shown_lines += chunk.count("\n") + 1
    if shown_lines < len(lines):
        sections.append(f"_… and {len(lines) - shown_lines} more steps_")
    blocks.extend(_section(s) for s in sections)

    footer: list[str] = []
    if links:
        footer.append(" · ".join(link(url, label) for label, url in links))
    if note:
        footer.append(escape(note))
    if updated_at is not None:
        epoch = int(updated_at.timestamp())
        footer.append(
            f"Updated <!date^{epoch}^{{date_short_pretty}} {{time_secs}}|{escape(updated_at.isoformat())}>"
        )
    if footer:
        blocks.append(_context(*footer))
    return blocks


# ---------------------------------------------------------------------- Block Kit limits
def _texts_of(block: dict[str, Any]) -> str:
    text = block.get("text")
    return str(text.get("text", "")) if isinstance(text, dict) else ""


def _text_object_problems(where: str, obj: object, limit: int, *, plain: bool = False) -> list[str]:
    if not isinstance(obj, dict):
        return [f"{where}: missing text object"]
    problems = []
    if plain and obj.get("type") != "plain_text":
        problems.append(f"{where} must be plain_text")
    n = len(str(obj.get("text", "")))
    if n > limit:
        problems.append(f"{where} of {n} chars (at most {limit})")
    if n == 0:
        problems.append(f"{where} is empty")
    return problems


def _element_problems(where: str, element: object) -> list[str]:
    """An interactive element (a button; the only kind stanch posts) against its limits."""
    if not isinstance(element, dict):
        return [f"{where}: not an object"]
    problems = []
    action_id = str(element.get("action_id", ""))
    if len(action_id) > MAX_ID:
        problems.append(f"{where}: action_id of {len(action_id)} chars (at most {MAX_ID})")
    if element.get("type") == "button":
        problems += _text_object_problems(f"{where}: button text", element.get("text"), MAX_BUTTON_TEXT,
                                          plain=True)
        value = str(element.get("value", ""))
        if len(value) > MAX_BUTTON_VALUE:
            problems.append(f"{where}: button value of {len(value)} chars (at most {MAX_BUTTON_VALUE})")
        url = str(element.get("url", ""))
        if len(url) > MAX_BUTTON_URL:
            problems.append(f"{where}: button url of {len(url)} chars (at most {MAX_BUTTON_URL})")
        if element.get("style") not in (None, "primary", "danger"):
            problems.append(f"{where}: button style {str(element.get('style'))[:20]!r} (primary or danger)")
        confirm = element.get("confirm")
        if isinstance(confirm, dict):
            for key, limit in (("title", 100), ("text", 300), ("confirm", 30), ("deny", 30)):  # all required
                problems += _text_object_problems(f"{where}: confirm {key}", confirm.get(key), limit,
                                                  plain=key != "text")
    return problems


def block_problems(blocks: Sequence[dict[str, Any]]) -> list[str]:
    """What in ``blocks`` breaks Slack's Block Kit limits (empty when the message would be accepted):
    <= 50 blocks, block_id <= 255 chars and unique, section text <= 3,000 chars, <= 10 fields of
    <= 2,000 chars, header <= 150 chars of plain text, context 1-10 elements, actions 1-25
    elements with unique action_ids (<= 255 chars), buttons: plain text <= 75 chars, value
    <= 2,000, url <= 3,000, confirm dialogs within theirs. Each problem names the block's index."""
    problems: list[str] = []
    if len(blocks) > MAX_BLOCKS:
        problems.append(f"{len(blocks)} blocks (at most {MAX_BLOCKS})")
    block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        if not isinstance(block, dict):
            problems.append(f"block {i}: not an object")
            continue
        kind = block.get("type")
        if "block_id" in block:
            block_id = str(block["block_id"])
            if len(block_id) > MAX_ID:
                problems.append(f"block {i}: block_id of {len(block_id)} chars (at most {MAX_ID})")
            if block_id in block_ids:
                problems.append(f"block {i}: duplicate block_id {block_id[:40]!r}")
            block_ids.add(block_id)
        if kind == "section":
            if len(_texts_of(block)) > MAX_SECTION_TEXT:
                problems.append(f"block {i}: section text of {len(_texts_of(block))} chars "
                                f"(at most {MAX_SECTION_TEXT})")
            fields = block.get("fields") or []
            if not block.get("text") and not fields:
                problems.append(f"block {i}: section without text or fields")
            if len(fields) > MAX_FIELDS:
                problems.append(f"block {i}: {len(fields)} fields (at most {MAX_FIELDS})")
            for j, f in enumerate(fields):
                if len(str(f.get("text", ""))) > MAX_FIELD_TEXT:
                    problems.append(f"block {i}: field {j} of {len(str(f.get('text', '')))} chars "
                                    f"(at most {MAX_FIELD_TEXT})")
            if "accessory" in block:
                problems += _element_problems(f"block {i}: accessory", block["accessory"])
        elif kind == "header":
            problems += _text_object_problems(f"block {i}: header", block.get("text"), MAX_HEADER_TEXT, plain=True)
        elif kind == "context":
            n = len(block.get("elements") or [])
            if not 1 <= n <= MAX_CONTEXT_ELEMENTS:
                problems.append(f"block {i}: context with {n} elements (1-{MAX_CONTEXT_ELEMENTS})")
        elif kind == "actions":
            elements = block.get("elements") or []
            if not 1 <= len(elements) <= MAX_ACTIONS_ELEMENTS:
                problems.append(f"block {i}: actions with {len(elements)} elements (1-{MAX_ACTIONS_ELEMENTS})")
            action_ids: set[str] = set()
            for j, element in enumerate(elements):
                problems += _element_problems(f"block {i}: element {j}", element)
                action_id = str(element.get("action_id", "")) if isinstance(element, dict) else ""
                if action_id and action_id in action_ids:
                    problems.append(f"block {i}: element {j}: duplicate action_id {action_id[:40]!r}")
                action_ids.add(action_id)
    return problems


def fit_blocks(blocks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``blocks`` cut to Slack's limits, with a visible ``TRUNCATED_NOTE`` when anything was cut:
    overlong texts, headers, fields and button labels are shortened, extra fields, context and
    actions elements dropped, and beyond 49 blocks the rest is replaced by the note (the full
    report is in the incident). Ids and button values are never altered (a cut value would point
    elsewhere): ``block_problems`` still reports those."""
    out: list[dict[str, Any]] = []
    cut = False
    for block in blocks:
        b = dict(block)
        kind = b.get("type")
        if kind == "section":
            text = b.get("text")
            if isinstance(text, dict) and len(str(text.get("text", ""))) > MAX_SECTION_TEXT:
                b["text"] = {**text, "text": _truncate(str(text["text"]), MAX_SECTION_TEXT)}
                cut = True
            fields = list(b.get("fields") or [])
            if fields:
                if len(fields) > MAX_FIELDS:
                    fields, cut = fields[:MAX_FIELDS], True
                fixed = []
                for f in fields:
                    if len(str(f.get("text", ""))) > MAX_FIELD_TEXT:
                        f, cut = {**f, "text": _truncate(str(f["text"]), MAX_FIELD_TEXT)}, True
                    fixed.append(f)
                b["fields"] = fixed
        elif kind == "header":
            text = b.get("text") or {}
            if len(str(text.get("text", ""))) > MAX_HEADER_TEXT:
                b["text"] = {**text, "text": _truncate(str(text["text"]), MAX_HEADER_TEXT)}
                cut = True
        elif kind == "context":
            elements = list(b.get("elements") or [])
            if len(elements) > MAX_CONTEXT_ELEMENTS:
                b["elements"], cut = elements[:MAX_CONTEXT_ELEMENTS], True
            if not b.get("elements"):
                continue  # an empty context is rejected by Slack
        elif kind == "actions":  # only what is shown is cut: ids and values are never altered
            elements = list(b.get("elements") or [])
            if len(elements) > MAX_ACTIONS_ELEMENTS:
                elements, cut = elements[:MAX_ACTIONS_ELEMENTS], True
            fixed_elements = []
            for e in elements:
                text = e.get("text") if isinstance(e, dict) else None
                if isinstance(text, dict) and len(str(text.get("text", ""))) > MAX_BUTTON_TEXT:
                    e, cut = {**e, "text": {**text, "text": _truncate(str(text["text"]), MAX_BUTTON_TEXT)}}, True
                fixed_elements.append(e)
            b["elements"] = fixed_elements
        out.append(b)
    if len(out) > MAX_BLOCKS:
        out, cut = out[: MAX_BLOCKS - 1], True
    if cut:
        note = _context(f"_{TRUNCATED_NOTE}_")
        if len(out) >= MAX_BLOCKS:
            out = out[: MAX_BLOCKS - 1]
        out.append(note)
    return out


# ---------------------------------------------------------------------- approval requests
def approver_mention(approver: str, group_ids: Mapping[str, str] | None = None) -> str:
    """How an approver is named so Slack notifies them: ``U…`` -> ``<@U…>``, ``S…`` or an
    ``@handle`` whose group id is known -> ``<!subteam^S…>``, else the escaped ``@handle``."""
    who = approver.strip()
    if _USER_ID.match(who) or _GROUP_ID.match(who):
        return mention(who)
    if who.startswith("@"):
        gid = (group_ids or {}).get(who[1:])
        if gid and _GROUP_ID.match(gid):
            return mention(gid)
    return escape(who)


def approval_blocks(
    step_id: str,
    asked: str,
    approvers: Sequence[str],
    min_approvals: int,
    expires_at: datetime,
    value: str,
    *,
    drill: bool = False,
    on_deny: str = "fail",
    group_ids: Mapping[str, str] | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """The approval request: ``(fallback text, blocks)`` with Approve / Deny buttons (``value`` names
    incident and step). Approvers are mentioned (``approver_mention``) in the text and the
    fallback, so Slack notifies them; a drill says DRILL in the header, banner and fallback.
    ``asked`` is the rendered (and redacted) approval message: untrusted, escaped here."""
    who = ", ".join(approver_mention(a, group_ids) for a in approvers)
    declined = " If denied, it and the steps that need it are skipped." if on_deny == "skip" else ""
    text = (f":lock: *Approval needed* for `{escape(step_id)}` — {escape(asked)}\n"
            f"{who}: needs {min_approvals} approval(s); the initiator cannot approve. "
            f"Expires {expires_at:%Y-%m-%d %H:%M UTC} (then denied).{declined}")
    blocks: list[dict[str, Any]] = []
    if drill:
        blocks.append(_context(DRILL_BANNER))
    blocks.append(_header(f"{'DRILL · ' if drill else ''}Approval needed: {step_id}"))
    blocks.append(_section(_truncate(text, MAX_SECTION_TEXT)))
    blocks.append({"type": "actions", "block_id": f"approval:{step_id}", "elements": [
        {"type": "button", "action_id": "stanch_approve", "style": "primary", "value": value,
         "text": {"type": "plain_text", "text": "Approve"}},
        {"type": "button", "action_id": "stanch_deny", "style": "danger", "value": value,
         "text": {"type": "plain_text", "text": "Deny"}},
    ]})
    fallback = f"{'[DRILL] ' if drill else ''}Approval needed for {escape(step_id)} from {who}"
    return fallback, blocks
