"""Built-in actions that touch nothing outside stanch: notes and deliberate failures.

Owns: ``core.note`` (record a message; handy for manual checkpoints) and ``core.fail`` (fail
on purpose, transiently N times or permanently — for drills and tests of retries/compensation).
Must not touch: ``flows``, ``prefect``, any network.
"""

from __future__ import annotations

import threading

from integrations.base import (
    ActionContext,
    ActionParams,
    ActionRegistry,
    ActionResult,
    ActionSpec,
    PermanentActionError,
    PlannedOperation,
    TransientActionError,
)


class NoteParams(ActionParams):
    message: str


class NoteResult(ActionResult):
    message: str


def _note(ctx: ActionContext, p: NoteParams) -> NoteResult:
    ctx.record("note", {"message": p.message})
    return NoteResult(message=p.message)


class FailParams(ActionParams):
    message: str = "failed on purpose"
    transient_failures: int = 0
    permanent: bool = True


class FailResult(ActionResult):
    attempts: int


_attempts: dict[str, int] = {}
_attempts_lock = threading.Lock()


def _fail(ctx: ActionContext, p: FailParams) -> FailResult:
    with _attempts_lock:
        n = _attempts.get(ctx.idempotency_token, 0) + 1
        _attempts[ctx.idempotency_token] = n
    if n <= p.transient_failures:
        raise TransientActionError(f"{p.message} (transient failure {n} of {p.transient_failures})")
    if p.permanent:
        raise PermanentActionError(p.message)
    return FailResult(attempts=n)


def _describe_none(ctx: ActionContext, p: ActionParams) -> list[PlannedOperation]:
    return []


def register(registry: ActionRegistry) -> None:
    registry.register(ActionSpec(
        name="core.note", summary="Record a note in the timeline (no side effect)",
        params=NoteParams, result=NoteResult, run=_note, mutating=False, idempotent=True,
        describe=_describe_none))
    registry.register(ActionSpec(
        name="core.fail", summary="Fail on purpose (transiently N times, then permanently or not)",
        params=FailParams, result=FailResult, run=_fail, mutating=False, idempotent=True,
        describe=_describe_none))
