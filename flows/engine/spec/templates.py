"""Where a runbook's report/post-mortem template files may live, and resolving them safely.

Owns: the containment rule for ``report:`` / ``postmortem:`` paths (RB117). A template path
resolves, after following symlinks, inside the runbook's own folder or inside one of the folders
listed in ``STANCH_TEMPLATE_DIRS`` (``os.pathsep``-separated), and nowhere else: an absolute
path or ``..`` that leaves those folders is refused, whether or not the file exists.
A relative path is looked up in the runbook's folder first, then in each configured folder.
Must not touch: YAML, pydantic models, Jinja rendering, Prefect, boto3, Slack.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["TEMPLATE_DIRS_ENV", "TemplatePathError", "configured_template_dirs", "inside", "resolve_template"]

TEMPLATE_DIRS_ENV = "STANCH_TEMPLATE_DIRS"


class TemplatePathError(ValueError):
    """A template path that leaves the allowed folders (the message names the resolved path)."""


def configured_template_dirs() -> list[Path]:
    """The folders named by ``STANCH_TEMPLATE_DIRS`` (resolved; empty entries ignored)."""
    raw = os.environ.get(TEMPLATE_DIRS_ENV, "")
    return [Path(p).expanduser().resolve() for p in raw.split(os.pathsep) if p.strip()]


def inside(path: Path, roots: Sequence[Path]) -> bool:
    """True when the fully resolved ``path`` is one of ``roots`` (resolved) or below one."""
    real = path.resolve()
    return any(real.is_relative_to(root.resolve()) for root in roots)


def resolve_template(base_dir: Path, relative: str, extra_roots: Sequence[Path] = ()) -> Path:
    """The real path of template ``relative`` of a runbook in ``base_dir``.

    Raises ``TemplatePathError`` when it resolves outside ``base_dir`` and the configured
    folders. The returned path may not exist (callers report a missing file separately).
    """
    if "\x00" in relative:
        raise TemplatePathError("template path contains a NUL character")
    roots = [base_dir.resolve(), *configured_template_dirs(), *(r.resolve() for r in extra_roots)]
    primary = (base_dir / relative).resolve()
    if not any(primary.is_relative_to(root) for root in roots):
        allowed = "the runbook's folder" + (f" or the {TEMPLATE_DIRS_ENV} folders" if len(roots) > 1 else "")
        shown = "" if Path(relative).is_absolute() else f" (it resolves to {primary})"
        raise TemplatePathError(f"template path {relative!r} is outside {allowed}{shown}")
    if primary.is_file() or Path(relative).is_absolute():
        return primary
    for root in roots[1:]:
        candidate = (root / relative).resolve()
        if candidate.is_file() and any(candidate.is_relative_to(r) for r in roots):
            return candidate
    return primary
