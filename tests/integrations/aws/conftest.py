"""Helpers for the AWS action tests (on top of tests/integrations/conftest.py).

- ``clients``: ``clients("iam")`` -> a boto3 client acting in ``ACCOUNT`` on the moto server
  (for arranging state and reading it back).
- ``engine_retry``: ``engine_retry(call, attempts=3)`` -> (result, transient failures), the engine's
  retry loop in miniature: ``TransientActionError`` is retried, anything else propagates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from integrations.aws.session import clients_for
from integrations.errors import TransientActionError
from integrations.settings import StanchSettings

ACCOUNT = "222222222222"
T = TypeVar("T")


@pytest.fixture
def clients(aws_settings: StanchSettings) -> Callable[[str], Any]:
    acc = clients_for(aws_settings, ACCOUNT)
    return lambda service: acc(service)


def _engine_retry(call: Callable[[], T], attempts: int = 3) -> tuple[T, list[TransientActionError]]:
    failures: list[TransientActionError] = []
    for _ in range(attempts):
        try:
            return call(), failures
        except TransientActionError as exc:
            failures.append(exc)
    raise AssertionError(f"still failing after {attempts} attempts: {failures[-1]}")


@pytest.fixture
def engine_retry() -> Callable[..., Any]:
    return _engine_retry
