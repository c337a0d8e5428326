"""Injects of a drill: when each fires and what it does to the drill's own sandbox.

Owns: ``InjectRecord`` (what the scorecard shows: kind, description, fired, survived, retried),
``Injector``, which the runner calls on every tick with the run's timeline, and ``install`` (the
probes' call counters, before the run). Triggers: an offset from the run's start (``at: 30s``,
counted from the run's ``run.started`` event, which the runner passes in with ``run_started``;
nothing offset fires before it; ``at: 0s`` is the same as no trigger: at once, before the run's
first call),
``on: {step_started: X}`` or ``at_step: X`` (the same: when step X starts, read from the
incident's timeline, since the run is a child process), ``on: {calls: N, operation: Op}`` (a
latency-only, 0 ms rule on the drill's moto counts the calls of ``Op``; the inject arms once it
saw N); without any, at the start. ``aws_fault``: an error rule (Throttling, AccessDenied, 5xx),
or with ``error: null`` a latency-only rule. ``slack_outage``: a window that opens ``from`` after
the trigger and lasts ``for``. ``late_discovery``: the service (seeded in AWS by the fleet, e.g.
``legacy-desktop`` of the ``two-lines`` variant) is taken out of the inventory file before the
run and put back when the trigger fires — the run's scope did not see it, the probes do.
What an AWS fault did is read back from the sandbox at the end (``finish``): ``fired`` (calls it
faulted or delayed), ``retried`` (of those, the same call came again) and ``survived`` (of those,
the same call then succeeded); the fault rules are then removed, so the after-probes read a
healthy sandbox. A Slack outage's ``fired`` is the Slack calls it refused (503), read back from
the Slack stand-in's call record (``/_calls``) for its window; none refused: it did not fire.
Effects go only through the sandbox's control endpoints (``/_fault`` on moto and on the Slack
stand-in, ``/_killpoint`` on moto), the drill's own inventory file, or a SIGKILL of the run
process the runner started.

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
    """``fired``: how often it acted (an AWS fault: calls it faulted or delayed); ``survived``: of
    those, how many the drill came through (an AWS fault: the same call then succeeded, as the
    sandbox saw it; any other inject: every firing when the run still succeeded, else none);
    ``retried``: an AWS fault's faulted calls that were attempted again."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    description: str
    fired: int = 0
    survived: int = 0
    retried: int = 0


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


def _step_trigger(inject: Any) -> str | None:
    """The step whose start fires the inject: ``on: {step_started: X}`` or ``at_step: X``."""
    if inject.on is not None and inject.on.step_started:
        return str(inject.on.step_started)
    step = getattr(inject, "at_step", None)
    return str(step) if step else None


def describe(inject: Any) -> str:
    k = inject.kind
    when = f" at {inject.at}" if inject.at else ""
    if _step_trigger(inject):
        when = f" when {_step_trigger(inject)} starts"
    elif inject.on is not None and inject.on.calls:
        when = f" after {inject.on.calls} {inject.on.operation} call(s)"
    if k == "aws_fault":
        how = f"rate {inject.rate:.0%}" if inject.rate is not None else (
            f"{inject.count} call(s)" if inject.count else "every call")
        acct = f" in account {inject.account}" if inject.account else ""
        if inject.error is None:
            return f"+{inject.latency_ms:g} ms latency on {inject.service}:{inject.operation}{acct} ({how}){when}"
        lat = f", +{inject.latency_ms:g} ms" if inject.latency_ms else ""
        return f"{inject.error} on {inject.service}:{inject.operation}{acct} ({how}{lat}){when}"
    if k == "slack_outage":
        start = f" from {inject.from_}" if inject.from_ else ""
        return f"Slack down{start} for {inject.for_}{when}"
    if k == "kill_and_resume":
        if inject.operation:
            nth = f" the {_ordinal(inject.skip + 1)}" if inject.skip else ""
            where = f"{inject.when}{nth} {inject.operation}"
            return f"run killed ({where}) and resumed{when}"
        return f"run killed and resumed{when}"
    if k == "late_discovery":
        return f"{inject.service} discovered late (added to the inventory){when}"
    return f"{k}{when}"


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def install(moto_url: str, rules: list[dict[str, Any]]) -> list[str]:
    """Add ``rules`` (e.g. the probes' call counters) to the drill's moto; their ids."""
    return [str(_call("POST", f"{moto_url.rstrip('/')}/_fault", r)["id"]) for r in rules]


class Injector:
    """Arms each inject when its trigger is met; the runner supplies the sandbox and the run's pid."""

    def __init__(self, injects: list[Any], moto_url: str, slack_root: str | None,
                 clock: Callable[[], float] = time.monotonic, inventory: Path | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        self.injects = injects
        self.inventory = inventory
        self.moto_url = moto_url.rstrip("/")
        self.slack_root = slack_root
        self.clock = clock
        self.wall = wall
        self.t0: float | None = None  # the run's run.started (run_started); offsets count from it
        self.records = [InjectRecord(kind=i.kind, description=describe(i)) for i in injects]
        self._armed = [False] * len(injects)
        self._fault_ids: dict[int, str] = {}
        self._outage_from: dict[int, float] = {}  # slack_outage due, its window opens at this clock time
        self._outage_until: dict[int, float | None] = {}
        self._windows: dict[int, list[list[float | None]]] = {}  # slack_outage -> [opened, closed] (wall)
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
                rule = {"action": inj.on.operation, "status": None, "delay_ms": 0, "label": "inject:trigger"}
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
    def run_started(self) -> None:
        """The run's ``run.started`` was seen: time offsets (``at:``, ``from:`` without a trigger)
        count from now. Only the first call counts (a resume does not restart the clock)."""
        if self.t0 is None:
            self.t0 = self.clock()

    def _due(self, i: int, inj: Any, started_steps: set[str], calls: dict[int, int]) -> bool:
        step = _step_trigger(inj)
        if step is not None:
            return step in started_steps
        if inj.on is not None and inj.on.calls:
            return calls.get(i, 0) >= inj.on.calls
        if not _seconds(inj.at) and not getattr(inj, "from_", None):
            return True  # no trigger, no offset (or at: 0s): at once, before the run makes its first call
        if self.t0 is None:
            return False  # an offset counts from the run's run.started
        return self.clock() - self.t0 >= (_seconds(inj.at) or 0.0)

    def tick(self, started_steps: set[str], run_pid: int | None, run_started: bool = False) -> bool:
        """Arm what is due (``run_started``: the run's ``run.started`` is in its timeline); returns
        True if this tick SIGKILLed the run."""
        if run_started:
            self.run_started()
        killed = False
        waiting = [i for i in self._counters if not self._armed[i]]
        calls = self._calls_seen() if waiting else {}
        for i, inj in enumerate(self.injects):
            if inj.kind == "slack_outage":
                if i in self._outage_from and self.clock() >= self._outage_from[i]:
                    del self._outage_from[i]
                    self._outage(i, inj)
                if i in self._outage_until:
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
            elif inj.kind == "slack_outage":  # its window opens `from` after now (at once without one)
                self._outage_from[i] = self.clock() + (_seconds(inj.from_) or 0.0)
                if not inj.from_:
                    del self._outage_from[i]
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
                                 {"pid": run_pid, "operation": inj.operation, "when": inj.when, "skip": inj.skip})
                    self._kill_ids[i] = rule["id"]
                else:  # at a step start: SIGKILL the run process now
                    os.kill(run_pid, signal.SIGKILL)
                    self.records[i].fired += 1
                    killed = True
        return killed

    def _fault(self, i: int, inj: Any) -> None:
        rule: dict[str, Any] = {"service": inj.service, "action": inj.operation, "label": f"inject:{i}"}
        if inj.error is None:  # latency only: delayed, then answered normally
            rule.update(status=None, delay_ms=inj.latency_ms or 0.0)
        else:
            status, code = ERRORS[inj.error]
            rule.update(status=status, code=code)
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
        self._windows.setdefault(i, []).append([self.wall(), None])  # fired: the calls refused in it
        length = None if inj.for_ == "run" else _seconds(inj.for_)
        self._outage_until[i] = None if length is None else self.clock() + length

    def _end_outage(self, i: int) -> None:
        if self.slack_root is not None:
            _call("DELETE", f"{self.slack_root}/_fault")
        self._outage_until.pop(i, None)
        for window in self._windows.get(i, []):
            if window[1] is None:
                window[1] = self.wall()

    def _refused_slack_calls(self) -> None:
        """Each Slack outage's ``fired``: the calls the stand-in answered 503 inside its windows."""
        if not self._windows or self.slack_root is None:
            return
        calls = _call("GET", f"{self.slack_root}/_calls").get("calls", [])
        refused = [float(c.get("time", 0)) for c in calls if c.get("status") == 503]
        for i, windows in self._windows.items():
            self.records[i].fired = sum(1 for t in refused for lo, hi in windows
                                        if lo is not None and lo <= t and (hi is None or t <= hi))

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

    def finish(self, run_succeeded: bool) -> list[InjectRecord]:
        """End open outages (and windows that never opened), put back late discoveries that never
        fired, read each AWS fault's fired/retried/survived back from the sandbox and remove the
        fault rules (the after-probes must not be throttled); every other inject survived each of
        its firings when the run succeeded."""
        for i in list(self._hidden):
            data = self._inventory()
            data.setdefault("services", []).append(self._hidden.pop(i))
            self._write_inventory(data)
        self._outage_from.clear()
        for i in list(self._outage_until):
            self._end_outage(i)
        self._refused_slack_calls()
        if self._fault_ids:
            rules = _call("GET", f"{self.moto_url}/_fault")
            rules = rules.get("rules", rules) if isinstance(rules, dict) else rules
            by_id = {r.get("id"): r for r in rules}
            for i, rid in self._fault_ids.items():
                seen = by_id.get(rid, {})
                rec = self.records[i]
                rec.fired, rec.retried = int(seen.get("fired", 0)), int(seen.get("retried", 0))
                rec.survived = min(rec.fired, int(seen.get("survived", 0)))
                _call("DELETE", f"{self.moto_url}/_fault?id={rid}")
        for i, rec in enumerate(self.records):
            if i not in self._fault_ids:
                rec.survived = rec.fired if run_succeeded else 0
        return self.records
