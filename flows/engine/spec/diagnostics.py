"""Compiler-style diagnostics for runbooks, and the table of their codes.

Owns: ``Diagnostic`` (one problem at one position), ``CODES`` (every RBxxx code and its title;
``docs/runbook-language.md`` mirrors this table), formatting and ordering.
Must not touch: YAML, pydantic models, the action registry, Prefect, boto3, Slack.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CODES",
    "MAX_DIAGNOSTICS",
    "Diagnostic",
    "Severity",
    "cap_diagnostics",
    "format_all",
    "has_errors",
    "lookalike_note",
    "sort_diagnostics",
]

#: At most this many diagnostics are reported per file; one RB005 says how many more there were.
MAX_DIAGNOSTICS = 100

Severity = Literal["error", "warning"]

#: code -> short title. RB0xx: the file and its shape; RB1xx: meaning (graph, actions, templates).
CODES: dict[str, str] = {
    "RB001": "YAML syntax error",
    "RB002": "duplicate YAML key",
    "RB003": "schema error (missing, unknown or mistyped field)",
    "RB004": "runbook exceeds a limit (size, nesting, aliases, steps)",
    "RB005": "too many diagnostics (the rest are not shown)",
    "RB101": "duplicate step id",
    "RB102": "unknown step in needs",
    "RB103": "dependency cycle",
    "RB104": "unknown action",
    "RB105": "invalid action parameters",
    "RB106": "template references an unknown input",
    "RB107": "template references a step that is unknown or not upstream",
    "RB108": "template syntax error",
    "RB109": "item used outside for_each",
    "RB110": "unknown compensation action",
    "RB111": "missing template file",
    "RB112": "template references an unknown variable",
    "RB113": "invalid input declaration",
    "RB114": "option does not apply to this kind of step",
    "RB115": "template references an unknown output field",
    "RB116": "expression expected",
    "RB117": "template file outside the allowed folders",
    "RB118": "step id hides a built-in",
    "RB119": "for_each is not a list",
    "RB120": "invalid approval",
    "RB121": "step can never run",
    "RB122": "misplaced when-step",
}


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a runbook. ``line``/``col`` are 1-based."""

    file: str
    line: int
    col: int
    code: str
    message: str
    severity: Severity = "error"
    hint: str | None = None

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unknown diagnostic code {self.code!r}")

    @property
    def title(self) -> str:
        return CODES[self.code]

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def sort_key(self) -> tuple[str, int, int, str, str]:
        return (self.file, self.line, self.col, self.code, self.message)

    def format(self, *, hint: bool = True) -> str:
        """``runbooks/x.yaml:12:7: error[RB104]: unknown action ...`` (+ an indented hint line)."""
        text = f"{self.file}:{self.line}:{self.col}: {self.severity}[{self.code}]: {self.message}"
        if hint and self.hint:
            text += f"\n    hint: {self.hint}"
        return text

    def __str__(self) -> str:
        return self.format()


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """By file and position; exact duplicates removed."""
    return sorted(set(diagnostics), key=Diagnostic.sort_key)


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.is_error for d in diagnostics)


def format_all(diagnostics: Iterable[Diagnostic]) -> str:
    """Every diagnostic, sorted, one per line (hints indented below), with a trailing newline."""
    lines = [d.format() for d in sort_diagnostics(diagnostics)]
    return "".join(line + "\n" for line in lines)


def cap_diagnostics(diagnostics: list[Diagnostic], limit: int = MAX_DIAGNOSTICS) -> list[Diagnostic]:
    """The first ``limit`` of sorted ``diagnostics``, plus one RB005 counting the rest."""
    if len(diagnostics) <= limit:
        return diagnostics
    rest = diagnostics[limit:]
    errors = sum(1 for d in rest if d.is_error)
    last = diagnostics[limit - 1]
    return [
        *diagnostics[:limit],
        Diagnostic(
            last.file,
            last.line,
            last.col,
            "RB005",
            f"… {len(rest)} more diagnostics not shown ({errors} errors); fix the ones above first",
            severity="error" if errors else "warning",
        ),
    ]


def lookalike_note(text: str) -> str:
    """`` (it contains non-ASCII U+0430 CYRILLIC SMALL LETTER A)`` for names with homoglyphs, else ``""``."""

    odd = sorted({c for c in text if ord(c) > 127})
    if not odd:
        return ""
    named = ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, 'unnamed character')}" for c in odd[:3])
    more = f" and {len(odd) - 3} more" if len(odd) > 3 else ""
    return f" (it contains non-ASCII lookalike character{'s' if len(odd) > 1 else ''} {named}{more})"
