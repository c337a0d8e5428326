"""TEMPORARY stand-in for drill-spec's modules (``flows.drills.scenario``, ``integrations.probes``,
``flows.drills.scorecard``), coded against /work/wt/DRILL-INTERFACE.md so the runner works and
is tested before their code is merged. ``flows.drills.contract`` picks theirs when present.

Delete this file once drill-spec's branch is merged (nothing else imports it directly).
Must not touch: anything outside reading moto (via ``integrations.sandbox.observe``) and files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from integrations.errors import ConfigurationError, RunbookError
from integrations.sandbox import observe

_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def seconds(value: str | float | int | None) -> float | None:
    """"30s" / "2m" / "500ms" / 12 -> seconds."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    m = _DUR.match(value)
    if not m:
        raise ValueError(f"not a duration: {value!r}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FleetSpec(_M):
    accounts: int = 3
    services_per_account: int = 1
    affected: list[str] | int = ["desktop-app"]
    variant: str | None = None


class ApproverBehaviour(_M):
    user: str
    decision: Literal["approve", "deny", "silent"] = "approve"
    after: str = "0s"


class Trigger(_M):
    step_started: str | None = None
    calls: int | None = None
    operation: str | None = None


class _Inject(_M):
    at: str | None = None
    on: Trigger | None = None


class AwsFault(_Inject):
    kind: Literal["aws_fault"]
    service: str
    operation: str
    account: str | None = None
    error: Literal["Throttling", "AccessDenied", "5xx"] = "Throttling"
    rate: float | None = None
    count: int | None = None
    latency_ms: float | None = None


class SlackOutage(_Inject):
    kind: Literal["slack_outage"]
    from_: str | None = Field(default=None, alias="from")
    for_: str = Field(default="run", alias="for")


class KillAndResume(_Inject):
    kind: Literal["kill_and_resume"]
    at_step: str | None = None
    operation: str | None = None
    when: Literal["before", "after", "answered"] = "after"


class LateDiscovery(_Inject):
    kind: Literal["late_discovery"]
    at_step: str | None = None
    service: str


Inject = Annotated[AwsFault | SlackOutage | KillAndResume | LateDiscovery, Field(discriminator="kind")]


class ProbeUse(_M):
    probe: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    name: str | None = None


class ProbeSets(_M):
    before: list[ProbeUse] = []
    after: list[ProbeUse] = []
    continuous: list[ProbeUse] = []
    interval: str = "2s"


class Targets(_M):
    time_to_contain: str | None = None
    time_to_first_decision: str | None = None


class Scenario(_M):
    name: str
    title: str
    description: str = ""
    runbook: str
    inputs: dict[str, Any] = {}
    fleet: FleetSpec = FleetSpec()
    approvers: list[ApproverBehaviour] = []
    injects: list[Inject] = []
    probes: ProbeSets = ProbeSets()
    targets: Targets = Targets()


def load_scenario(path: Path) -> Scenario:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Scenario.model_validate(data)
    except (yaml.YAMLError, ValidationError, OSError) as exc:
        raise RunbookError(f"{path}: invalid scenario: {exc}") from None


def resolve_scenario(ref: str) -> Path:
    p = Path(ref)
    if p.exists():
        return p
    root = Path(__file__).resolve().parents[2] / "runbooks" / "drills"
    for base in (Path.cwd() / "runbooks" / "drills", root):
        for ext in (".yaml", ".yml"):
            if (base / f"{ref}{ext}").exists():
                return base / f"{ref}{ext}"
    raise ConfigurationError(f"no drill scenario named {ref!r}")


# ------------------------------------------------------------------ probes


@dataclass(frozen=True)
class ProbeContext:
    aws: Any
    slack_base_url: str | None
    slack_token: str | None
    inventory_path: Path | None
    incident: dict[str, Any]
    before: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProbeResult:
    name: str
    passed: bool
    observed: Any
    expected: str
    detail: str


def _fleet(ctx: ProbeContext) -> dict[str, Any]:
    return dict(ctx.incident.get("fleet") or {})


def _services(ctx: ProbeContext, affected: bool) -> list[dict[str, Any]]:
    return [s for s in _fleet(ctx).get("services", {}).values() if bool(s.get("affected")) == affected]


def _keys(ctx: ProbeContext, affected: bool, want: str, name: str) -> ProbeResult:
    seen = {s["name"]: observe.access_key_statuses(ctx.aws, s["account"], s["ci_user"])
            for s in _services(ctx, affected)}
    bad = {n: st for n, st in seen.items() if set(st.values()) != {want}}
    return ProbeResult(name, not bad, seen, f"every CI key {want}",
                       "; ".join(f"{n}: {sorted(st.values())}" for n, st in bad.items()) or "ok")


def _cert(ctx: ProbeContext, name: str) -> ProbeResult:
    problems, observed = [], {}
    for s in _services(ctx, True):
        if not s.get("certificate_arn"):
            continue
        facts = observe.certificate_facts(ctx.aws, s["account"], s["certificate_arn"])
        before = (ctx.before.get(name) or {}).get(s["name"], {}).get("serial")
        observed[s["name"]] = {"account": s["account"], "serial": str(facts["serial"]), "before": before}
        if before is not None and str(facts["serial"]) == before:
            problems.append(f"{s['name']} in account {s['account']}: serial unchanged ({before})")
    return ProbeResult(name, not problems, observed, "new serial at the same ARN", "; ".join(problems) or "ok")


def _emails(ctx: ProbeContext, name: str) -> ProbeResult:
    counts: dict[str, int] = {}
    for m in observe.sent_emails(ctx.aws):
        for to in m.to:
            counts[to] = counts.get(to, 0) + 1
    audiences = _fleet(ctx).get("audiences", {})
    wanted = {e for s in _services(ctx, True) if s.get("audience")
              for e in audiences.get(s["audience"], {}).get("emails", [])}
    bad = {a: counts.get(a, 0) for a in wanted | set(counts) if counts.get(a, 0) != (1 if a in wanted else 0)}
    return ProbeResult(name, not bad, counts, "each affected audience address exactly one email",
                       "; ".join(f"{a}: {n}" for a, n in sorted(bad.items())) or "ok")


class ProbeRegistry:
    def names(self) -> list[str]:
        return ["acm.certificate_reissued", "iam.ci_keys_inactive", "iam.keys_untouched",
                "ses.one_email_per_address"]

    def run(self, name: str, params: dict[str, Any], ctx: ProbeContext) -> ProbeResult:
        if name == "iam.ci_keys_inactive":
            return _keys(ctx, True, "Inactive", name)
        if name == "iam.keys_untouched":
            return _keys(ctx, False, "Active", name)
        if name == "acm.certificate_reissued":
            return _cert(ctx, name)
        if name == "ses.one_email_per_address":
            return _emails(ctx, name)
        raise ConfigurationError(f"unknown probe {name!r}")


def default_probes() -> ProbeRegistry:
    return ProbeRegistry()


# ------------------------------------------------------------------ scorecard


class Scorecard(_M):
    scenario: str
    runbook: str
    incident_id: str
    drill: bool = True
    started_at: str
    finished_at: str
    outcome: str
    score: int
    passed: bool
    time_to_contain_s: float | None
    target_time_to_contain_s: float | None
    time_to_first_decision_s: float | None
    target_time_to_first_decision_s: float | None
    probes: list[dict[str, Any]]
    approvers: list[dict[str, Any]]
    injects: list[dict[str, Any]]
    retries: int
    weights: dict[str, int]


def _ts(v: str) -> datetime:
    return datetime.fromisoformat(v.replace("Z", "+00:00"))


def build_scorecard(scenario: Scenario, *, incident_id: str, timeline: list[dict[str, Any]],
                    probe_results: dict[str, list[ProbeResult]], injects: list[Any], started_at: datetime,
                    finished_at: datetime) -> Scorecard:
    probes = [{"phase": ph, "name": r.name, "probe": r.name, "passed": r.passed, "observed": r.observed,
               "expected": r.expected, "detail": r.detail} for ph, rs in probe_results.items() for r in rs]
    first = next((e for e in timeline if e["kind"] == "run.started"), timeline[0] if timeline else None)
    t0 = _ts(first["ts"]) if first else started_at
    done = [e for e in timeline if e["kind"] in ("run.finished",)]
    ttc = (_ts(done[-1]["ts"]) - t0).total_seconds() if done else (finished_at - t0).total_seconds()
    decisions = [e for e in timeline if e["kind"] in ("approval.approved", "approval.denied")]
    ttfd = (_ts(decisions[0]["ts"]) - t0).total_seconds() if decisions else None
    outcome = next((str((e.get("data") or {}).get("outcome")) for e in reversed(timeline)
                    if (e.get("data") or {}).get("outcome")), "unknown")
    target = seconds(scenario.targets.time_to_contain)
    tfd = seconds(scenario.targets.time_to_first_decision)
    ok_t = target is None or ttc <= target
    ok_d = tfd is None or (ttfd is not None and ttfd <= tfd)
    n_ok = sum(p["passed"] for p in probes)
    weights = {"probes": 70, "time_to_contain": 20, "time_to_first_decision": 10}
    score = round(weights["probes"] * (n_ok / len(probes) if probes else 1) + weights["time_to_contain"] * ok_t
                  + weights["time_to_first_decision"] * ok_d)
    return Scorecard(
        scenario=scenario.name, runbook=scenario.runbook, incident_id=incident_id,
        started_at=started_at.isoformat(), finished_at=finished_at.isoformat(), outcome=outcome, score=score,
        passed=n_ok == len(probes) and ok_t and ok_d, time_to_contain_s=round(ttc, 3),
        target_time_to_contain_s=target, time_to_first_decision_s=ttfd, target_time_to_first_decision_s=tfd,
        probes=probes, approvers=[], injects=[i.model_dump(mode="json") for i in injects],
        retries=sum(1 for e in timeline if e["kind"] in ("item.retrying",)), weights=weights)


def render_markdown(sc: Scorecard) -> str:
    lines = [f"# Drill scorecard: {sc.scenario} — {'PASSED' if sc.passed else 'FAILED'} ({sc.score}/100)", "",
             f"Incident {sc.incident_id}, runbook {sc.runbook}, outcome {sc.outcome}.", "",
             f"Time to contain: {sc.time_to_contain_s}s (target {sc.target_time_to_contain_s}s)", "",
             "| phase | probe | passed | detail |", "|---|---|---|---|"]
    lines += [f"| {p['phase']} | {p['name']} | {'yes' if p['passed'] else 'NO'} | {p['detail']} |"
              for p in sc.probes]
    lines += ["", "| inject | fired | survived |", "|---|---|---|"]
    lines += [f"| {i['description']} | {i['fired']} | {i['survived']} |" for i in sc.injects]
    return "\n".join(lines) + "\n"
