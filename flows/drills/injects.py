"""Injects of a drill: when each fires and what it does to the drill's own sandbox.

Owns: ``InjectRecord`` (what the scorecard shows: kind, description, fired, survived) and
``Injector``, which the runner calls on every tick with the run's timeline. Triggers: an offset
from the start (``at: 30s``), ``on: {step_started: X}`` (read from the incident's timeline, since
the run is a child process), ``on: {calls: N, operation: Op}`` (a latency-only, 0 ms rule on
the drill's moto counts the calls of ``Op``; the inject arms once it saw N); without any, at the
start. ``late_discovery``: the service (seeded in AWS by the fleet, e.g. ``legacy-desktop`` of
the ``two-lines`` variant) is taken out of the inventory file before the run and put back when
the trigger fires — the run's scope did not see it, the probes do. Effects go only through the
sandbox's control endpoints (``/_fault`` on moto and on the Slack stand-in, ``/_killpoint`` on
moto), the drill's own inventory file, or a SIGKILL of the run process the runner started.

Must not touch: any process or endpoint that is not this drill's.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import urllib3
import yaml
from pydantic import BaseModel, ConfigDict

from integrations.errors import ConfigurationError
from integrations.urls import is_loopback

_http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=10))

ERRORS = {"Throttling": (400, "Throttling"), "AccessDenied": (403, "AccessDeniedException"),
          "5xx": (503, "ServiceUnavailable")}


class InjectRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str
    description: str
    fired: int = 0
    survived: bool = True


def _call(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    if not is_loopback(url):
        raise ConfigurationError(f"refusing to inject into a non-loopback endpoint: {url}")
    resp = _http.request(method, url, body=json.dumps(body).encode() if body is not None else None,
                         headers={"Content-Type": "application/json"})
    if resp.status >= 300:
        raise ConfigurationError(f"{method} {url}: HTTP {resp.status}: {resp.data[:200]!r}")
    return json.loads(resp.data or b"{}")


def _seconds(v: str | None) -> float | None:
    from flows.drills.contract import seconds

    return seconds(v)


def describe(inject: Any) -> str:
    k = inject.kind
    when = f" at {inject.at}" if inject.at else ""
    if inject.on is not None and inject.on.step_started:
        when = f" when {inject.on.step_started} starts"
    elif inject.on is not None and inject.on.calls:
        when = f" after {inject.on.calls} {inject.on.operation} call(s)"
    if k == "aws_fault":
        how = f"rate {inject.rate:.0%}" if inject.rate is not None else (
            f"{inject.count} call(s)" if inject.count else "every call")
        acct = f" in account {inject.account}" if inject.account else ""
        lat = f", +{inject.latency_ms:.0f} ms" if inject.latency_ms else ""
        return f"{inject.error} on {inject.service}:{inject.operation}{acct} ({how}{lat}){when}"
    if k == "slack_outage":
        return f"Slack down for {inject.for_}{when}"
    if k == "kill_and_resume":
        at = inject.operation or inject.at_step
        return f"run killed ({inject.when} {at}) and resumed{when}"
    if k == "late_discovery":
        return f"{inject.service} discovered late (added to the inventory){when}"
    return f"{k}{when}"


class Injector:
    """Arms each inject when its trigger is met; the runner supplies the sandbox and the run's pid."""

    def __init__(self, injects: list[Any], moto_url: str, slack_root: str | None,
                 clock: Callable[[], float] = time.monotonic, inventory: Path | None = None) -> None:
        self.injects = injects
        self.inventory = inventory
        self.moto_url = moto_url.rstrip("/")
        self.slack_root = slack_root
        self.clock = clock
        self.t0 = clock()
        self.records = [InjectRecord(kind=i.kind, description=describe(i)) for i in injects]
        self._armed = [False] * len(injects)
        self._fault_ids: dict[int, str] = {}
        self._outage_until: dict[int, float | None] = {}
        self.killed = 0  # kills of the run process done by us or by a kill point we set
        self._kill_ids: dict[int, str] = {}
        self._counters: dict[int, str] = {}  # inject -> latency-only rule counting its trigger's calls
        self._hidden: dict[int, dict[str, Any]] = {}  # late_discovery -> the inventory entry held back

    def prepare(self) -> None:
        """Before the run: hide late discoveries from the inventory, start call counters."""
        for i, inj in enumerate(self.injects):
            if inj.kind == "late_discovery":
                self._hidden[i] = self._take_service(inj.service)
            if inj.on is not None and inj.on.calls:
                if not inj.on.operation:
                    raise ConfigurationError("a calls trigger needs an operation")
                rule = {"action": inj.on.operation, "status": None, "delay_ms": 0}
                self._counters[i] = _call("POST", f"{self.moto_url}/_fault", rule)["id"]

    def _inventory(self) -> dict[str, Any]:
        if self.inventory is None:
            raise ConfigurationError("late_discovery needs the sandbox inventory")
        data: dict[str, Any] = yaml.safe_load(self.inventory.read_text(encoding="utf-8"))
        return data

    def _take_service(self, name: str) -> dict[str, Any]:
        data = self._inventory()
        keep = [s for s in data.get("services", []) if s.get("name") != name]
        if len(keep) == len(data.get("services", [])):
            raise ConfigurationError(f"late_discovery: service {name!r} is not in the seeded fleet "
                                     "(use a fleet variant that has it, e.g. two-lines for legacy-desktop)")
        taken = next(s for s in data["services"] if s.get("name") == name)
        data["services"] = keep
        self._write_inventory(data)
        return dict(taken)

    def _write_inventory(self, data: dict[str, Any]) -> None:
        assert self.inventory is not None
        tmp = self.inventory.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        tmp.replace(self.inventory)

    def _calls_seen(self) -> dict[int, int]:
        if not self._counters:
            return {}
        rules = _call("GET", f"{self.moto_url}/_fault").get("rules", [])
        fired = {r.get("id"): int(r.get("fired", 0)) for r in rules}
        return {i: fired.get(rid, 0) for i, rid in self._counters.items()}

    # -- triggers
    def _due(self, i: int, inj: Any, started_steps: set[str], calls: dict[int, int]) -> bool:
        if inj.on is not None and inj.on.step_started:
            return inj.on.step_started in started_steps
        if inj.on is not None and inj.on.calls:
            return calls.get(i, 0) >= inj.on.calls
        offset = _seconds(inj.at) or 0.0
        return self.clock() - self.t0 >= offset

    def tick(self, started_steps: set[str], run_pid: int | None) -> bool:
        """Arm what is due; returns True if this tick SIGKILLed the run."""
        killed = False
        waiting = [i for i in self._counters if not self._armed[i]]
        calls = self._calls_seen() if waiting else {}
        for i, inj in enumerate(self.injects):
            if inj.kind == "slack_outage" and i in self._outage_until:
                until = self._outage_until[i]
                if until is not None and self.clock() >= until:
                    self._end_outage(i)
            if self._armed[i] or not self._due(i, inj, started_steps, calls):
                continue
            if inj.kind == "kill_and_resume" and run_pid is None:
                continue
            self._armed[i] = True
            if inj.kind == "aws_fault":
                self._fault(i, inj)
            elif inj.kind == "slack_outage":
                self._outage(i, inj)
            elif inj.kind == "late_discovery":
                data = self._inventory()
                data.setdefault("services", []).append(self._hidden.pop(i))
                self._write_inventory(data)
                self.records[i].fired += 1
            elif inj.kind == "kill_and_resume":
                assert run_pid is not None
                if inj.operation:
                    rule = _call("POST", f"{self.moto_url}/_killpoint",
                                 {"pid": run_pid, "operation": inj.operation, "when": inj.when})
                    self._kill_ids[i] = rule["id"]
                else:  # at a step start: SIGKILL the run process now
                    os.kill(run_pid, signal.SIGKILL)
                    self.records[i].fired += 1
                    killed = True
        return killed

    def _fault(self, i: int, inj: Any) -> None:
        status, code = ERRORS[inj.error]
        rule: dict[str, Any] = {"service": inj.service, "action": inj.operation, "status": status, "code": code}
        if inj.account:
            rule["account"] = inj.account
        if inj.rate is not None:
            rule["rate"] = inj.rate
        if inj.count is not None:
            rule["count"] = inj.count
        if inj.latency_ms:
            rule["delay_ms"] = inj.latency_ms
        self._fault_ids[i] = _call("POST", f"{self.moto_url}/_fault", rule)["id"]

    def _outage(self, i: int, inj: Any) -> None:
        if self.slack_root is None:
            raise ConfigurationError("slack_outage needs the drill's Slack stand-in")
        _call("POST", f"{self.slack_root}/_fault", {"method": "*", "count": 10**9, "status": 503})
        self.records[i].fired += 1
        length = None if inj.for_ == "run" else _seconds(inj.for_)
        self._outage_until[i] = None if length is None else self.clock() + length

    def _end_outage(self, i: int) -> None:
        if self.slack_root is not None:
            _call("DELETE", f"{self.slack_root}/_fault")
        self._outage_until.pop(i, None)

    def kill_points_fired(self) -> int:
        """How many of our kill points fired since the last call (the run died on one)."""
        if not self._kill_ids:
            return 0
        rules = _call("GET", f"{self.moto_url}/_killpoint")
        rules = rules.get("rules", rules) if isinstance(rules, dict) else rules
        fired = 0
        for i, rid in list(self._kill_ids.items()):
            if any(r.get("id") == rid and r.get("fired") for r in rules):
                self.records[i].fired += 1
                fired += 1
                del self._kill_ids[i]
        return fired

    def finish(self, survived: bool) -> list[InjectRecord]:
        """End open outages, put back late discoveries that never fired, read fault counts back
        from the injector, set ``survived``."""
        for i in list(self._hidden):
            data = self._inventory()
            data.setdefault("services", []).append(self._hidden.pop(i))
            self._write_inventory(data)
        for i in list(self._outage_until):
            self._end_outage(i)
        if self._fault_ids:
            rules = _call("GET", f"{self.moto_url}/_fault")
            rules = rules.get("rules", rules) if isinstance(rules, dict) else rules
            by_id = {r.get("id"): r for r in rules}
            for i, rid in self._fault_ids.items():
                self.records[i].fired = int(by_id.get(rid, {}).get("fired", 0))
        for rec in self.records:
            rec.survived = survived
        return self.records
