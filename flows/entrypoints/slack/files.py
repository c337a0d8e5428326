"""Inputs given in Slack that name files: confined to configured folders.

Owns: finding which runbook inputs reach an action parameter that names a file (an action's
params class lists them in ``file_params``: ``"path"`` or ``"path-or-id"``), and checking the
values a Slack user gave for them: the path, resolved with symlinks against each allowed folder
(``STANCH_SLACK_INPUT_DIRS``, default the folders of ``STANCH_INVENTORY`` and
``STANCH_ADVISORIES_DIR``), must be an existing file inside one of them; it is then passed to the
run as that absolute path. Anything else is refused before the run starts, naming the input and
the value the user typed — never the content of any file.

Must not touch: Prefect, Bolt, the files themselves (it only resolves paths).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from integrations.errors import InputError

_INPUT_REF = re.compile(r"""inputs\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*['"]([^'"]+)['"]\s*\])""")
_ID_LIKE = re.compile(r"^[A-Za-z][A-Za-z0-9:_-]{0,127}$")  # OSV ids have no dots or slashes


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def file_inputs(plan: Any, registry: Any) -> dict[str, str]:
    """``{input name: "path" | "path-or-id"}`` for every input a step passes to a file parameter."""
    out: dict[str, str] = {}
    for step in plan.steps:
        if not step.action or step.action not in registry:
            continue
        kinds: dict[str, str] = dict(getattr(registry.get(step.action).params, "file_params", {}) or {})
        for param, kind in kinds.items():
            for text in _strings(step.with_.get(param)):
                for m in _INPUT_REF.finditer(text):
                    name = m.group(1) or m.group(2)
                    if out.get(name) != "path":
                        out[name] = kind
    return out


def confine(name: str, value: str, kind: str, dirs: list[Path]) -> str:
    """The absolute, symlink-resolved path of ``value`` inside one of ``dirs`` (or ``value``
    itself when it is an id for a ``path-or-id`` parameter); InputError otherwise."""
    if not value.strip():
        return value
    if kind == "path-or-id" and _ID_LIKE.match(value):
        return value
    if "\x00" in value:
        raise InputError(f"input {name!r}: not a file name")
    if not dirs:
        raise InputError(f"input {name!r} names a file, and files cannot be named from Slack here "
                         "(no STANCH_SLACK_INPUT_DIRS configured)")
    given = Path(value)  # never expanduser: "~" is just a folder name here
    for base in dirs:
        try:
            root = base.resolve(strict=True)
            cand = (given if given.is_absolute() else root / given).resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if cand.is_relative_to(root) and cand.is_file():
            return str(cand)
    shown = ", ".join(str(d) for d in dirs)
    raise InputError(f"input {name!r}: {value!r} is not a file inside the folders Slack inputs may name ({shown})")


def confine_inputs(plan: Any, registry: Any, given: dict[str, Any], dirs: list[Path]) -> dict[str, Any]:
    """``given`` with every file-naming input checked and replaced by its confined absolute path."""
    kinds = file_inputs(plan, registry)
    out = dict(given)
    problems: list[str] = []
    for name, kind in kinds.items():
        value = given.get(name)
        if isinstance(value, str):
            try:
                out[name] = confine(name, value, kind, dirs)
            except InputError as exc:
                problems.append(str(exc))
    if problems:
        raise InputError("; ".join(problems))
    return out
