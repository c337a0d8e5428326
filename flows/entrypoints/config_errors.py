"""What a bad ``STANCH_*`` setting looks like on the terminal: one line per problem, naming the
environment variable and what it expects, never the value (a setting may hold a secret).

Owns: ``settings_problem`` (pydantic ``ValidationError`` → message). Must not touch: reading the
environment itself (pydantic-settings does), exit codes (the CLI decides).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

ENV_PREFIX = "STANCH_"


def _variable(model: Any, loc: tuple[int | str, ...]) -> str:
    if not loc:
        return f"{ENV_PREFIX}*"
    name = str(loc[0])
    field = (getattr(model, "model_fields", None) or {}).get(name)
    alias = getattr(field, "validation_alias", None) or getattr(field, "alias", None)
    base = alias if isinstance(alias, str) else ENV_PREFIX + name.upper()
    return base + "".join(f"[{p}]" for p in loc[1:])


def settings_problem(exc: ValidationError | SettingsError, model: Any = None) -> str:
    """``bad setting: STANCH_AWS_MAX_ATTEMPTS: Input should be a valid integer``; several problems
    are joined with ``; ``. ``model`` is the settings class (for field aliases). A value that
    pydantic-settings could not even parse (JSON of a complex field) names its field."""
    if isinstance(exc, SettingsError):
        text = str(exc).split("\n", 1)[0]
        return f"bad setting: {text}"
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        msg = str(error.get("msg", "invalid value")).split("\n", 1)[0]
        parts.append(f"{_variable(model, tuple(error.get('loc', ())))}: {msg}")
    return "bad setting: " + "; ".join(parts or ["invalid settings"])
