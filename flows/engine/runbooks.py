"""Where runbooks are found: a path, or a name looked up in ``./runbooks`` and the bundled library.

Owns: ``REPO_RUNBOOKS`` (the bundled ``runbooks/`` folder) and ``resolve_runbook``.
Must not touch: Prefect, boto3, Slack.
"""

from __future__ import annotations

from pathlib import Path

from integrations.errors import InputError

REPO_RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"


def resolve_runbook(ref: str) -> Path:
    """A path, or a runbook name looked up in ./runbooks and the bundled runbooks/ folder."""
    p = Path(ref)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise InputError(f"runbook file not found: {p}")
        return p
    for base in (Path.cwd() / "runbooks", REPO_RUNBOOKS):
        for ext in (".yaml", ".yml"):
            cand = base / f"{ref}{ext}"
            if cand.exists():
                return cand
    known = sorted({c.stem for base in (Path.cwd() / "runbooks", REPO_RUNBOOKS) if base.exists()
                    for c in base.glob("*.y*ml")})
    raise InputError(f"no runbook named {ref!r} (known: {', '.join(known) or 'none'})")


