"""Skipped steps as task runs, so the Prefect UI's flow-run graph shows them (issue 13).

Owns: the ``skipped_step`` task (a task run that ends at once in a terminal Cancelled state named
"Skipped", its message the reason) and ``skipped_task_run``, which the scheduler calls for each
skipped step to get the task run its report is attached to. Must not touch: the run state, the
timeline or the report — the scheduler records and reports the skip; this only makes it visible
in Prefect. The reason given here must already be redacted (Prefect stores it in the state).
"""

from __future__ import annotations

import logging
from uuid import UUID

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.states import Cancelled, State

SKIPPED = "Skipped"
"""The state's name: the UI shows it as the task run's badge (type CANCELLED: grey, not green)."""


class _QuietSkips(logging.Filter):
    """Prefect logs every task run that does not end Completed as ERROR ("Finished in state
    Skipped(…)"): into the terminal's live table and the Logs tab. A skip is not an error and
    ``stanch.run`` already logs "step … skipped: <reason>"; drop Prefect's line for skips only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(f"Finished in state {SKIPPED}(")


logging.getLogger("prefect.task_runs").addFilter(_QuietSkips())


@task(persist_result=False, log_prints=False, cache_policy=NO_CACHE)
def skipped_step(reason: str) -> State[None]:
    """Ends its task run in the terminal state ``Skipped`` (type CANCELLED) with ``reason``."""
    return Cancelled(name=SKIPPED, message=reason)


def skipped_task_run(step_id: str, reason: str) -> UUID | None:
    """Create the skipped step's task run (named after the step, like its action's would be) in
    the current flow run and return its id; None when there is no flow run or Prefect refused
    (the report is then attached to the flow run, as before)."""
    if FlowRunContext.get() is None:  # not inside a flow run: no graph to show it in
        return None
    try:
        state = skipped_step.with_options(name=step_id, task_run_name=step_id)(reason, return_state=True)
    except Exception as exc:  # visibility in the UI is a convenience; the timeline is the record
        logging.getLogger("stanch").warning("could not create the task run of skipped step %s: %s", step_id, exc)
        return None
    return state.state_details.task_run_id
