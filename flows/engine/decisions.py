"""Sending one approval decision to an incident's paused run, over plain HTTP.

``stanch approve|deny``, the Slack app and drills all decide through ``submit_decision``, and
nothing here imports Prefect: importing it alone took 3.3 s of every 4 s ``stanch approve``.

Owns: the wire form of a decision (``decision_input``: the JSON the paused run's
``flows.engine.approvals.ApprovalDecision`` accepts), which Prefect API a decision goes to
(``decision_api``: PREFECT_API_URL — environment, else the active Prefect profile — when set,
else the address the run's latest attempt recorded as ``prefect_api_url`` in ``incident.json``),
finding the incident's PAUSED flow run by its ``incident:<id>`` tag (``POST
/flow_runs/filter``), resuming it with the decision (``POST /flow_runs/{id}/resume``),
``pending_approval`` and ``wait_outcome`` (the verdict the run recorded in its timeline), and
``store_dir`` (the incident folders, without importing pydantic-settings: ~0.5 s).

Whether a decision counts is the run's call (``flows.engine.approvals``), never this module's.
Must not touch: Prefect (not even imported), signing (``flows.engine.approval_keys``), the
approval rules (``flows.engine.approval_policy``).
"""

from __future__ import annotations

import base64
import json
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

from flows.engine.incident import Incident
from flows.engine.run_labels import incident_tag
from integrations.errors import ConfigurationError, InputError, StanchError

OUTCOMES = ("approval.approved", "approval.denied", "approval.refused", "approval.expired")
DECISION_FIELDS = ("approve", "approver", "step", "comment", "nonce", "signed_at", "signature")
POLL = 0.1  # s between looks at the timeline / for the pause (a decision is about a second end to end)
RETRY_CODES = frozenset({408, 429, 502, 503})


def _retry_after(header: str | None, attempt: int) -> float:
    """Seconds before retry ``attempt + 1``: the server's Retry-After (at most 5 s), else 0.2 s
    doubling up to 2 s, with jitter."""
    try:
        return min(5.0, max(0.0, float(header))) if header else min(2.0, 0.2 * 2 ** (attempt - 1)) * (
            0.75 + random.random() / 2)
    except ValueError:
        return 1.0


def store_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """``StanchSettings().store_dir`` (tested equal): STANCH_STORE when it is a folder, else
    ``<STANCH_HOME>/incidents`` (the PostgreSQL store's local working copy, or the default store)."""
    store = environ.get("STANCH_STORE") or ""
    if store and not store.startswith(("postgresql://", "postgres://")):
        return Path(store)
    return Path(environ.get("STANCH_HOME") or ".stanch") / "incidents"


def pending_approval(incident: Incident) -> dict[str, Any] | None:
    """The latest ``approval.requested`` event whose step is not decided yet, else None."""
    pending: dict[str, dict[str, Any]] = {}
    for e in incident.events():
        if e["kind"] == "approval.requested":
            pending[e["step"]] = e
        elif e["kind"] in ("approval.granted", "approval.denied", "approval.expired") and e["step"] in pending:
            del pending[e["step"]]
    return list(pending.values())[-1] if pending else None


def decision_input(*, approve: bool, approver: str, step: str, comment: str = "", nonce: str = "",
                   signed_at: float = 0.0, signature: str = "") -> dict[str, Any]:
    """What ``ApprovalDecision(...).model_dump()`` gives for these fields (tested equal): the
    run input the server validates against the schema the paused run saved."""
    return {"approve": approve, "approver": approver, "step": step, "comment": comment, "nonce": nonce,
            "signed_at": signed_at, "signature": signature}


@dataclass(frozen=True)
class PrefectApi:
    """A Prefect server's REST API at ``url`` (``…/api``), with the headers Prefect's own client
    sends (``Authorization`` from PREFECT_API_AUTH_STRING or PREFECT_API_KEY)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    timeout: float = 10.0
    hint: str = "PREFECT_API_URL"  # where the address came from, said when it cannot be reached

    def post(self, path: str, body: dict[str, Any], attempts: int = 6) -> Any:
        """POST JSON, the answer's JSON. Like Prefect's client, retries 408/429/502/503 (the
        server answers 503 when SQLite is locked, and rolls the request back) after Retry-After
        or a short backoff; StanchError when it cannot get an answer."""
        request = urllib.request.Request(
            f"{self.url.rstrip('/')}{path}", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json", **self.headers})
        for attempt in range(1, attempts + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read() or b"null")
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", "replace").strip()
                if exc.code in RETRY_CODES and attempt < attempts:
                    time.sleep(_retry_after(exc.headers.get("Retry-After"), attempt))
                    continue
                raise StanchError(f"the Prefect API at {self.url} answered {path} with HTTP {exc.code}"
                                  + (f": {detail}" if detail else "")) from None
            except (OSError, ValueError) as exc:
                reason = getattr(exc, "reason", None) or exc
                raise ConfigurationError(f"cannot reach the Prefect API at {self.url} ({self.hint}): "
                                         f"{reason}") from None
        raise AssertionError("unreachable")  # pragma: no cover


def auth_headers(auth_string: str | None, api_key: str | None) -> dict[str, str]:
    """Prefect's rule: a basic-auth string wins over an API key."""
    if auth_string:
        return {"Authorization": f"Basic {base64.b64encode(auth_string.encode()).decode()}"}
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _profile(environ: Mapping[str, str]) -> dict[str, Any]:
    """The active profile's settings in Prefect's ``profiles.toml`` (PREFECT_PROFILES_PATH, else
    ``$PREFECT_HOME/profiles.toml``; PREFECT_PROFILE, else the file's ``active``), or {}."""
    import tomllib

    home = environ.get("PREFECT_HOME") or str(Path.home() / ".prefect")
    path = Path(environ.get("PREFECT_PROFILES_PATH") or Path(home) / "profiles.toml").expanduser()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    profiles = data.get("profiles")
    if not isinstance(profiles, dict):
        return {}
    chosen = profiles.get(environ.get("PREFECT_PROFILE") or data.get("active") or "")
    return chosen if isinstance(chosen, dict) else {}


def configured_api(environ: Mapping[str, str] = os.environ) -> PrefectApi | None:
    """The API PREFECT_API_URL names — in the environment, else in the active Prefect profile —
    or None when it names none."""
    profile: dict[str, Any] | None = None

    def setting(name: str) -> str | None:
        nonlocal profile
        if environ.get(name):
            return environ[name]
        if profile is None:
            profile = _profile(environ)
        value = profile.get(name)
        return str(value) if value else None

    url = setting("PREFECT_API_URL")
    if not url:
        return None
    return PrefectApi(url, auth_headers(setting("PREFECT_API_AUTH_STRING"), setting("PREFECT_API_KEY")))


def recorded_api(meta: dict[str, Any]) -> PrefectApi:
    """The Prefect API the run's latest attempt recorded in ``incident.json`` (``prefect_api_url``:
    each start and resume records its own, e.g. a temporary server); ConfigurationError when
    there is none."""
    recorded = meta.get("prefect_api_url")
    if not isinstance(recorded, str) or not recorded:
        raise ConfigurationError("the run recorded no Prefect API address: set PREFECT_API_URL to the Prefect "
                                 "server it runs on")
    return PrefectApi(recorded, hint="the server the run recorded: is the run still alive? (if it runs on "
                                     "another server, set PREFECT_API_URL to it)")


def decision_api(meta: dict[str, Any], environ: Mapping[str, str] = os.environ) -> PrefectApi:
    """Where the incident's run waits: PREFECT_API_URL when configured (``configured_api``), else
    the API the run recorded (``recorded_api``)."""
    return configured_api(environ) or recorded_api(meta)


def find_paused_run(api: PrefectApi, incident_id: str) -> str | None:
    """The id of the newest PAUSED flow run tagged ``incident:<id>`` (``run_labels.incident_tag``:
    names are for people), or None."""
    runs = api.post("/flow_runs/filter", {
        "flow_runs": {"tags": {"all_": [incident_tag(incident_id)]}, "state": {"type": {"any_": ["PAUSED"]}}},
        "sort": "START_TIME_DESC", "limit": 1})
    return str(runs[0]["id"]) if isinstance(runs, list) and runs else None


def resume(api: PrefectApi, flow_run_id: str, run_input: dict[str, Any]) -> tuple[str, str]:
    """Resume the paused run with ``run_input``; (status, reason) of the server's orchestration
    result: ACCEPT; ABORT when it is not paused (any more); REJECT when the input does not fit
    the saved schema, the schema is not saved yet (the pause is being proposed), or the pause
    expired (then the result's state is FAILED)."""
    result = api.post(f"/flow_runs/{flow_run_id}/resume", {"run_input": run_input})
    if not isinstance(result, dict):
        return "REJECT", f"unexpected answer from the Prefect API: {str(result)[:200]}"
    status = str(result.get("status") or "").upper()
    reason = str((result.get("details") or {}).get("reason") or "")
    state = result.get("state") or {}
    if status == "REJECT" and state.get("type") == "FAILED":
        reason = "the run can no longer be resumed (its pause timed out)"
    return status, reason


def submit_decision(store: Path, incident_id: str, step_id: str, approver: str, approve: bool,
                    comment: str = "", wait: float = 10.0, *, nonce: str = "", signed_at: float = 0.0,
                    signature: str = "", api_of: Callable[[dict[str, Any]], PrefectApi] = decision_api) -> str:
    """Resume the incident's paused run with one decision; returns its nonce (``wait_outcome``).
    InputError when the incident is not waiting for ``step_id``; StanchError when no paused run
    takes the decision within ``wait`` seconds (the pause is proposed just after the
    ``approval.requested`` event, and again after each decision the run refuses). ``api_of``:
    the Prefect API to use, given the incident's meta (default ``decision_api``). Whether the
    approver counts is decided by the run itself (and recorded in its timeline), so a forged
    decision can never grant a step."""
    incident = Incident.open_existing(store, incident_id)
    pending = pending_approval(incident)
    if pending is None or pending["step"] != step_id:
        waiting = f"it waits for {pending['step']!r}" if pending else "it is not waiting for an approval"
        raise InputError(f"{incident_id}: cannot decide {step_id!r}: {waiting}")
    deadline = time.monotonic() + wait
    try:
        meta = incident.read_meta()
    except (OSError, ValueError):
        meta = {}
    api = api_of(meta)
    nonce = nonce or uuid4().hex
    run_input = decision_input(approve=approve, approver=approver, step=step_id, comment=comment, nonce=nonce,
                               signed_at=signed_at, signature=signature)
    why = f"no paused Prefect run tagged {incident_tag(incident_id)!r} on {api.url}"
    while True:
        run_id = find_paused_run(api, incident_id)
        if run_id is not None:
            status, reason = resume(api, run_id, run_input)
            if status == "ACCEPT":
                return nonce
            if status == "REJECT" and "schema not found" not in reason.lower():
                raise StanchError(f"{incident_id}: the Prefect server did not pass the decision on: {reason}")
            why = f"its run was not paused any more ({reason})" if reason else why
        if time.monotonic() >= deadline:
            raise StanchError(f"{incident_id}: {why} (is the run still alive, and is that the server it runs on?)")
        time.sleep(POLL)


def wait_outcome(store: Path, incident_id: str, nonce: str, timeout: float = 30.0) -> dict[str, Any] | None:
    """The ``approval.approved/denied/refused`` event the run recorded for decision ``nonce``, or
    None when it did not within ``timeout`` seconds (or the run's latest attempt finished without
    it: an earlier attempt's ``run.finished`` does not count, so a resumed run can be decided)."""
    incident = Incident.open_existing(store, incident_id)
    deadline = time.monotonic() + timeout
    while True:
        finished = False
        for e in incident.events():
            if e["kind"] in OUTCOMES and (e.get("data") or {}).get("decision") == nonce:
                return e
            if e["kind"] in ("run.started", "run.resumed", "run.finished"):
                finished = e["kind"] == "run.finished"
        if finished or time.monotonic() >= deadline:
            return None
        time.sleep(POLL)
