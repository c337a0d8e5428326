"""Secret inputs travel as references, never as values, wherever they would be stored.

A ``secret: true`` input's value must never reach Prefect's database (``flow_run.parameters``),
``incident.json``, ``plan.json``, the timeline, logs, artifacts or Slack. So every caller of the
runbook flow passes ``{"$secret_ref": "<input>"}`` in place of the value, and the flow resolves
the reference in the process that runs it, from (first hit wins):

1. the process-local vault (``deposit``): the CLI (``stanch run`` / ``resume`` / ``rollback``) and
   the Slack app's in-process launcher put the values there before they call the flow, in the
   same process, and ``discard`` them when it returns;
2. ``STANCH_SECRET_<INPUT>`` in the environment of that process (the worker running a deployment),
   with ``<INPUT>`` upper-cased and every non-alphanumeric character turned into ``_``;
3. ``STANCH_SECRET_<INPUT>_FILE``: a path whose content (one trailing newline stripped) is the value
   (a mounted Kubernetes/Docker secret).

The incident keeps only the marker: ``stanch resume`` must be given the value again (or find it
in the environment) and refuses, naming the input, when it is not there.

Compensation records are written to the timeline and read back at rollback time; a parameter
that *is* a secret input's value is recorded as the reference and resolved again when the
compensation runs (``to_refs`` / ``from_refs``).

Owns: the reference format, the vault, resolution, and the resume/rollback pre-checks.
Must not touch: Prefect, boto3, Slack.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

from flows.engine.redaction import MASK, masked_path
from integrations.errors import InputError

SECRET_REF = "$secret_ref"

_vault: dict[str, dict[str, str]] = {}
_vault_lock = threading.Lock()


def ref(name: str) -> dict[str, str]:
    return {SECRET_REF: name}


def is_ref(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {SECRET_REF} and isinstance(value[SECRET_REF], str)


def secret_names(plan: Any) -> set[str]:
    """The names of a plan's ``secret: true`` inputs."""
    return {name for name, spec in plan.inputs.items() if spec.secret}


def split(plan: Any, given: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """``given`` -> (what may be stored: secrets replaced by references, the secret values)."""
    secret = secret_names(plan)
    public = {k: (ref(k) if k in secret and not is_ref(v) else v) for k, v in given.items()}
    values = {k: str(v) for k, v in given.items() if k in secret and not is_ref(v)}
    return public, values


def with_refs_for_absent(plan: Any, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` plus a reference for each *required* secret input left out: the process that
    runs the flow resolves it from its environment (a worker's ``STANCH_SECRET_<NAME>``) or the
    run refuses to start, naming it."""
    absent = {k: ref(k) for k in sorted(secret_names(plan)) if k not in given and plan.inputs[k].is_required}
    return {**given, **absent}


def public_inputs(plan: Any, values: dict[str, Any]) -> dict[str, Any]:
    """Resolved input values as they may be written down: non-secret verbatim, a secret input
    that has a value as its marker (an empty/absent optional secret stays as it is)."""
    secret = secret_names(plan)
    return {k: (ref(k) if k in secret and v not in (None, "") else v) for k, v in values.items()}


# ----------------------------------------------------------------------------- the vault
def deposit(incident_id: str, values: dict[str, str]) -> None:
    """Keep secret input values for a run of ``incident_id`` in this process (never written)."""
    if values:
        with _vault_lock:
            _vault.setdefault(incident_id, {}).update(values)


def discard(incident_id: str) -> None:
    with _vault_lock:
        _vault.pop(incident_id, None)


def env_name(name: str) -> str:
    return "STANCH_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def from_environment(name: str) -> str | None:
    """``STANCH_SECRET_<NAME>`` or the content of the file ``STANCH_SECRET_<NAME>_FILE`` names."""
    var = env_name(name)
    if os.environ.get(var):
        return os.environ[var]
    path = os.environ.get(var + "_FILE")
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"secret input {name!r}: cannot read {var}_FILE ({path}): {exc.strerror}") from None
        return text[:-1] if text.endswith("\n") else text
    return None


def lookup(incident_id: str, name: str) -> str | None:
    with _vault_lock:
        hit = _vault.get(incident_id, {}).get(name)
    return hit if hit is not None else from_environment(name)


def _where(name: str) -> str:
    return f"give it with -i {name}=… (stanch run/resume/rollback) or set {env_name(name)} in the environment " \
           "of the process that runs the flow"


def resolve(incident_id: str, inputs: dict[str, Any], *, strict: bool = True) -> tuple[dict[str, Any], list[str]]:
    """Replace references by their values -> (inputs, names that could not be resolved, which
    keep their reference).
    ``strict``: a missing value is an ``InputError`` naming every such input (nothing has run)."""
    out: dict[str, Any] = {}
    missing: list[str] = []
    for k, v in inputs.items():
        if not is_ref(v):
            out[k] = v
            continue
        value = lookup(incident_id, v[SECRET_REF])
        if value is None:
            missing.append(k)
            out[k] = v  # stays a reference (strict=False): never a stand-in value
        else:
            out[k] = value
    if missing and strict:
        raise InputError("secret input(s) not available to this run: "
                         + "; ".join(f"{name!r}: {_where(name)}" for name in missing))
    return out, missing


# ------------------------------------------------------------------ compensation records
def to_refs(value: Any, secrets: dict[str, str]) -> Any:
    """A compensation's parameters as recorded: a string equal to a secret input's value becomes
    that input's reference (so rollback gets the value back, never ``[redacted]``)."""
    if isinstance(value, str):
        for name, secret in secrets.items():
            if secret and value == secret:
                return ref(name)
        return value
    if isinstance(value, dict):
        return {k: to_refs(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_refs(v, secrets) for v in value]
    return value


def from_refs(value: Any, values: dict[str, Any]) -> Any:
    """Undo ``to_refs`` with the run's resolved inputs; an unavailable secret is an InputError."""
    if is_ref(value):
        name = value[SECRET_REF]
        got = values.get(name)
        if got is None or is_ref(got):
            raise InputError(f"secret input {name!r} is needed by this compensation: {_where(name)}")
        return got
    if isinstance(value, dict):
        return {k: from_refs(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [from_refs(v, values) for v in value]
    return value


def refs_in(value: Any) -> set[str]:
    """Names of the secret inputs referenced anywhere in ``value``."""
    if is_ref(value):
        return {value[SECRET_REF]}
    if isinstance(value, dict):
        return set().union(*(refs_in(v) for v in value.values())) if value else set()
    if isinstance(value, list | tuple):
        return set().union(*(refs_in(v) for v in value)) if value else set()
    return set()


# ------------------------------------------------------------------ resume / rollback checks
def resume_inputs(plan: Any, stored: dict[str, Any], given: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The inputs a resumed run gets -> (flow parameters with references, secret values for the
    vault). ``stored`` is ``incident.json``'s inputs, ``given`` what ``-i`` gives again.
    Refuses (``InputError`` naming each input) rather than run with a value it does not have:
    a secret stored only as a marker and not given again nor in the environment, or a value an
    older stanch wrote as ``[redacted]``."""
    secret = secret_names(plan)
    public: dict[str, Any] = {}
    values: dict[str, str] = {}
    problems: list[str] = []
    for k in [*stored, *(g for g in given if g not in stored)]:
        if k in given:
            public[k] = ref(k) if k in secret else given[k]
            if k in secret:
                values[k] = str(given[k])
            continue
        v = stored[k]
        if k in secret and (is_ref(v) or v == MASK):
            if from_environment(k) is None:
                problems.append(f"secret input {k!r} is not kept in the incident: {_where(k)}")
            public[k] = ref(k)
        elif isinstance(v, str) and MASK in v:
            problems.append(f"input {k!r} was recorded as {MASK!r} (by an older stanch): give it again with "
                            f"-i {k}=…")
        else:
            public[k] = v
    if problems:
        raise InputError("cannot continue this incident: " + "; ".join(problems))
    return public, values


def rollback_problems(compensations: dict[str, list[dict[str, Any]]], given: dict[str, Any]) -> list[str]:
    """Why the recorded compensations cannot run as recorded: a referenced secret input neither
    given (``-i``) nor in the environment, or a parameter recorded as ``[redacted]``."""
    problems: list[str] = []
    for step, records in compensations.items():
        for rec in records:
            where = f"{step}[{rec['item']}]" if rec.get("item") else step
            for name in sorted(refs_in(rec.get("with"))):
                if name not in given and from_environment(name) is None:
                    problems.append(f"undo of {where} needs secret input {name!r}: {_where(name)}")
            bad = masked_path(rec.get("with"))
            if bad is not None:
                problems.append(f"undo of {where}: parameter {bad!r} was recorded as {MASK!r}; "
                                "it cannot be undone automatically")
    return problems

