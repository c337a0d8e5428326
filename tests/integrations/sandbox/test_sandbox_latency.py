"""Latency rules of the fault injector: delay matching requests only, count/rate, clearing."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import pytest

from integrations.aws.session import clients_for
from integrations.sandbox.faults import (
    FaultInjector,
    FaultRule,
    clear_faults,
    inject_fault,
    inject_latency,
    list_faults,
)
from integrations.settings import StanchSettings

ACCOUNT = "111111111111"
DELAY_MS = 150


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def test_latency_rule_delays_matching_requests_only(aws_settings: StanchSettings, aws_endpoint: str) -> None:
    iam = clients_for(aws_settings, ACCOUNT)("iam")
    iam.list_users()  # warm the connection and the session
    rule_id = inject_latency(aws_endpoint, "ListUsers", service="iam", delay_ms=DELAY_MS)
    assert _timed(iam.list_users) >= DELAY_MS / 1000
    assert _timed(iam.list_roles) < DELAY_MS / 1000  # another operation: not delayed
    [rule] = list_faults(aws_endpoint)
    assert rule.id == rule_id and rule.status is None and rule.delay_ms == DELAY_MS and rule.fired == 1
    clear_faults(aws_endpoint)
    assert _timed(iam.list_users) < DELAY_MS / 1000
    assert iam.list_users()["Users"] == []  # moto still answered normally


def test_latency_count_then_no_delay(aws_settings: StanchSettings, aws_endpoint: str) -> None:
    iam = clients_for(aws_settings, ACCOUNT)("iam")
    iam.list_users()
    inject_latency(aws_endpoint, delay_ms=DELAY_MS, count=1)  # any action, once
    assert _timed(iam.list_users) >= DELAY_MS / 1000
    assert _timed(iam.list_users) < DELAY_MS / 1000
    assert list_faults(aws_endpoint)[0].exhausted


def test_latency_scoped_by_account(aws_settings: StanchSettings, aws_endpoint: str) -> None:
    mine = clients_for(aws_settings, ACCOUNT)("iam")
    other = clients_for(aws_settings, "222222222222")("iam")
    mine.list_users()
    other.list_users()
    inject_latency(aws_endpoint, "ListUsers", account="222222222222", delay_ms=DELAY_MS)
    assert _timed(other.list_users) >= DELAY_MS / 1000
    assert _timed(mine.list_users) < DELAY_MS / 1000


def test_slow_error_and_latency_plus_fault_stack(aws_settings: StanchSettings, aws_endpoint: str) -> None:
    from botocore.exceptions import ClientError

    iam = clients_for(aws_settings, ACCOUNT)("iam")
    iam.list_users()
    inject_latency(aws_endpoint, "ListUsers", delay_ms=DELAY_MS)
    inject_fault(aws_endpoint, "ListUsers", status=503, code="ServiceUnavailable", count=1, delay_ms=DELAY_MS)
    t0 = time.perf_counter()
    with pytest.raises(ClientError) as err:
        iam.list_users()
    assert time.perf_counter() - t0 >= 2 * DELAY_MS / 1000  # both delays, then the error
    assert err.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert _timed(iam.list_users) >= DELAY_MS / 1000  # fault exhausted, latency stays


def test_rule_validation() -> None:
    with pytest.raises(ValueError, match="needs a status"):
        FaultRule(action="*", status=None)
    with pytest.raises(ValueError, match="jitter_ms needs delay_ms"):
        FaultRule(action="*", jitter_ms=5)
    with pytest.raises(ValueError):
        FaultRule(action="*", status=None, delay_ms=-1)


def test_jitter_and_rate_in_the_middleware() -> None:
    calls: list[str] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        calls.append(environ["PATH_INFO"])
        start_response("200 OK", [])
        return [b"ok"]

    inj = FaultInjector(app, rng=random.Random(7))
    inj.add(FaultRule(action="*", status=None, delay_ms=10, jitter_ms=20))
    delays = [inj._take("iam", "ListUsers", None)[0] for _ in range(50)]
    assert all(0.010 <= d <= 0.030 for d in delays) and len(set(delays)) > 1
    inj.clear()
    inj.add(FaultRule(action="*", status=None, delay_ms=10, rate=0.0))
    assert inj._take("iam", "ListUsers", None) == (0.0, None)
    environ = {"PATH_INFO": "/", "REQUEST_METHOD": "GET", "HTTP_AUTHORIZATION": ""}
    assert list(inj(environ, lambda *a: None)) == [b"ok"] and calls == ["/"]


def test_inject_fault_without_status_or_delay_is_rejected(aws_endpoint: str) -> None:
    with pytest.raises(ValueError, match="fault rule rejected"):
        inject_fault(aws_endpoint, "ListUsers", status=None)
