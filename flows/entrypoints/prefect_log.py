"""Prefect's log lines during a CLI run: off the terminal, into a file of the incident.

Owns: ``logs_to_file(path)`` — while ``stanch run|resume|rollback|demo`` shows its live table,
every logging handler that writes to the terminal (Prefect's console handler on the root logger,
uvicorn's and fastapi's, ``prefect._internal``'s debug handler) is taken off it, and what it
would have shown (e.g. "ERROR | Task run 'x' - … Traceback …") goes to ``path`` instead, created
only when something is logged. The handlers come back afterwards. Prefect's API handler (the
Logs tab of the Prefect UI) and handlers writing elsewhere are untouched.
Must not touch: stanch's own output, the Prefect API, the timeline.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FORMAT = "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s"
"""As Prefect's console shows them (with the flow or task run's name when a record has one)."""


def _formatter() -> logging.Formatter:
    from prefect.logging.formatters import PrefectFormatter

    return PrefectFormatter(
        FORMAT, datefmt="%Y-%m-%d %H:%M:%S",
        flow_run_fmt="%(asctime)s.%(msecs)03d | %(levelname)-7s | Flow run %(flow_run_name)r - %(message)s",
        task_run_fmt="%(asctime)s.%(msecs)03d | %(levelname)-7s | Task run %(task_run_name)r - %(message)s")


def _writes_to_terminal(handler: logging.Handler) -> bool:
    if isinstance(handler, logging.FileHandler):
        return False
    from prefect.logging.handlers import PrefectConsoleHandler

    if isinstance(handler, PrefectConsoleHandler):
        return True
    stream = getattr(handler, "stream", None)
    return isinstance(handler, logging.StreamHandler) and stream is not None and stream in (
        sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)


class _FileHandler(logging.FileHandler):
    """Appends, creating the file (and its folder) on the first record only."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, mode="a", encoding="utf-8", delay=True)
        self.setFormatter(_formatter())
        self.records = 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.stream is None:
            Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        self.records += 1
        super().emit(record)


@contextmanager
def logs_to_file(path: Path) -> Iterator[_FileHandler]:
    """Send what the terminal's log handlers would show to ``path`` until the block ends; the
    handler it yields counts the records written (``records``; 0: no file was created)."""
    target = _FileHandler(path)
    swapped: list[tuple[logging.Logger, logging.Handler]] = []
    loggers = [logging.getLogger()] + [lg for lg in list(logging.root.manager.loggerDict.values())
                                       if isinstance(lg, logging.Logger)]
    for logger in loggers:
        for handler in list(logger.handlers):
            if _writes_to_terminal(handler):
                logger.removeHandler(handler)
                swapped.append((logger, handler))
        if any(lg is logger for lg, _ in swapped) and target not in logger.handlers:
            logger.addHandler(target)  # the logger's level still decides what is logged
    try:
        yield target
    finally:
        for logger, handler in swapped:
            logger.removeHandler(target)
            logger.addHandler(handler)
        target.close()
