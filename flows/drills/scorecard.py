"""The drill scorecard: what a drill measured, a 0-100 score, ``scorecard.json`` and ``scorecard.md``.

Owns: ``Scorecard`` (its JSON is the stable record drill-ops reads for history and trends: see
docs/drills.md), ``build_scorecard`` (timeline + probe results + inject records -> Scorecard),
``render_markdown`` and the score's ``WEIGHTS`` (documented in docs/drills.md).
Measures, from the incident's timeline: time to contain = first ``run.started`` -> last
``run.finished`` with outcome ``succeeded`` (None when the run never succeeded); time to first
decision = first ``approval.requested`` -> first ``approval.approved``/``approval.denied``;
time to last containment = first ``run.started`` -> the last ``step.succeeded`` of a containment
step (the runner names them: mutating, not a notification), which excludes waiting for a later
clean-up approval that time to contain includes;
per-approver response times; engine retries (``item.retrying``). From the runner's inject
records: per inject fired / survived / retried as the sandbox saw them (AWS retries). A
before-probe that only records a baseline for an after-probe (``needs_before``) is shown, not
scored; an inject that never fired is shown as "did not fire", not scored.
Must not touch: files, Slack, Prefect, boto3 — the runner writes and posts what this returns.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from flows.drills.scenario import Scenario, seconds

__all__ = ["WEIGHTS", "ApproverLine", "InjectLine", "ProbeLine", "Scorecard", "build_scorecard", "render_markdown"]

#: points out of 100 (docs/drills.md "The score"): each component scores its share of passes.
WEIGHTS: dict[str, int] = {
    "probes": 50,  # share of scored probes (before, continuous, after; not baselines) that passed
    "targets": 25,  # share of the set targets (time to contain, time to first decision) met
    "faults_survived": 15,  # injects that fired: mean share of their firings survived
    "approver_response": 10,  # share of approver requests answered before the approval expired
}


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProbeLine(_M):
    phase: str
    name: str
    probe: str
    passed: bool
    observed: Any
    expected: str
    detail: str
    scored: bool = True  # False: a before-observation kept only as an after-probe's baseline


class ApproverLine(_M):
    user: str
    step: str
    requested_at: str
    decided_at: str | None
    response_s: float | None
    decision: str  # approve | deny | none (never answered)


class InjectLine(_M):
    kind: str
    description: str
    fired: int
    survived: int  # of the firings: the same AWS call then succeeded / the run still succeeded
    retried: int = 0  # AWS faults: faulted calls attempted again
    result: str = ""  # did not fire | survived | not survived | partly survived (k of n)


def inject_result(fired: int, survived: int) -> str:
    if fired <= 0:
        return "did not fire"
    if survived >= fired:
        return "survived"
    return "not survived" if survived <= 0 else f"partly survived ({survived} of {fired})"


class Scorecard(_M):
    scenario: str
    title: str = ""
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
    probes: list[ProbeLine]
    # first run.started -> last step.succeeded of a containment step (mutating, not a notification);
    # not a target, shown beside time to contain (which also waits for e.g. a clean-up approval)
    time_to_last_containment_s: float | None = None
    approvers: list[ApproverLine]
    injects: list[InjectLine]
    retries: int  # engine + AWS
    retries_engine: int = 0  # step/item retries of the run (item.retrying)
    retries_aws: int = 0  # faulted AWS calls attempted again (botocore's retries and the engine's)
    weights: dict[str, int]
    components: dict[str, float]  # component -> achieved share 0..1
    # what the drill harness itself could not do (e.g. a scripted approver's decision the run
    # refused): the drill did not rehearse what the scenario says, so it cannot pass
    harness_problems: list[str] = []

    @property
    def failed_probes(self) -> list[ProbeLine]:
        return [p for p in self.probes if p.scored and not p.passed]


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _first(timeline: list[dict[str, Any]], *kinds: str) -> dict[str, Any] | None:
    return next((e for e in timeline if e.get("kind") in kinds), None)


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name)


def _user(actor: str | None) -> str:
    return (actor or "").removeprefix("slack:")


def _approvers(timeline: list[dict[str, Any]], people: Sequence[str] = ()) -> list[ApproverLine]:
    """One line per (approval request, approver named in it). A ``@group`` approver is expanded
    to the scenario's people (``people``: the users its ``approvers:`` list), each shown as
    ``U… via @group``, so every person's response time is on the scorecard."""
    lines: list[ApproverLine] = []
    for i, e in enumerate(timeline):
        if e.get("kind") != "approval.requested":
            continue
        step = str(e.get("step"))
        closes = ("approval.granted", "approval.denied", "approval.expired")
        later = timeline[i + 1:]
        end = next((j for j, x in enumerate(later) if x.get("kind") in closes and x.get("step") == step), len(later))
        window = later[: end + 1]
        for named in (e.get("data") or {}).get("approvers") or []:
            named = str(named)
            for user, shown in ([(p, f"{p} via {named}") for p in people] if named.startswith("@") and people
                                else [(named, named)]):
                decided = next((x for x in window if x.get("step") == step and _user(x.get("actor")) == user
                                and x.get("kind") in ("approval.approved", "approval.denied")), None)
                lines.append(ApproverLine(
                    user=shown, step=step, requested_at=str(e["ts"]),
                    decided_at=str(decided["ts"]) if decided else None,
                    response_s=round((_ts(decided["ts"]) - _ts(e["ts"])).total_seconds(), 3) if decided else None,
                    decision={"approval.approved": "approve", "approval.denied": "deny"}[decided["kind"]]
                    if decided else "none"))
    return lines


def _baseline_probes(scenario: Scenario) -> set[str]:
    """Probes whose before-observation is only the baseline a later use compares with
    (``needs_before`` in the registry, e.g. the certificate's serial): recorded, not scored."""
    from integrations.probes import default_probes

    registry = default_probes()
    known = set(registry.names())
    return {u.probe for u in scenario.probes.before if u.probe in known and registry.get(u.probe).needs_before}


def build_scorecard(scenario: Scenario, *, incident_id: str, timeline: list[dict[str, Any]],
                    probe_results: dict[str, list[Any]], injects: list[Any], started_at: datetime,
                    finished_at: datetime, harness_problems: Sequence[str] = (),
                    containment_steps: Collection[str] = ()) -> Scorecard:
    """Score one drill. ``probe_results[phase]`` are ``ProbeResult``s in the order of
    ``scenario.probes.<phase>`` (continuous: repeated rounds of that list); ``injects`` are the
    runner's ``InjectRecord``s (or dicts with kind, description, fired, survived);
    ``harness_problems``: what the runner could not do as scripted (any one fails the drill);
    ``containment_steps``: the runbook's steps that contain (mutating, not a notification), for
    ``time_to_last_containment_s``."""
    probes: list[ProbeLine] = []
    baselines = _baseline_probes(scenario)
    for phase in ("before", "continuous", "after"):
        uses = getattr(scenario.probes, phase)
        for i, r in enumerate(probe_results.get(phase) or []):
            use = uses[i % len(uses)] if uses else None
            probe = use.probe if use else r.name
            probes.append(ProbeLine(phase=phase, name=r.name, probe=probe, passed=r.passed, observed=r.observed,
                                    expected=r.expected, detail=r.detail,
                                    scored=not (phase == "before" and probe in baselines)))
    started = _first(timeline, "run.started")
    finishes = [e for e in timeline if e.get("kind") == "run.finished"]
    outcome = str((finishes[-1].get("data") or {}).get("outcome", "unknown")) if finishes else "unfinished"
    contained = outcome == "succeeded" and started is not None
    ttc = round((_ts(finishes[-1]["ts"]) - _ts(started["ts"])).total_seconds(), 3) if contained and started else None
    contained_at = [e for e in timeline if e.get("kind") == "step.succeeded" and e.get("step") in containment_steps]
    ttlc = (round((_ts(contained_at[-1]["ts"]) - _ts(started["ts"])).total_seconds(), 3)
            if contained_at and started is not None else None)
    requested = _first(timeline, "approval.requested")
    decided = _first(timeline, "approval.approved", "approval.denied")
    ttfd = (round((_ts(decided["ts"]) - _ts(requested["ts"])).total_seconds(), 3)
            if requested is not None and decided is not None else None)
    target_ttc = seconds(scenario.targets.time_to_contain)
    target_ttfd = seconds(scenario.targets.time_to_first_decision)
    targets_met: list[bool] = []
    if target_ttc is not None:
        targets_met.append(ttc is not None and ttc <= target_ttc)
    if target_ttfd is not None and requested is not None:  # no approval asked: nothing to measure
        targets_met.append(ttfd is not None and ttfd <= target_ttfd)
    inject_lines = []
    for x in injects:
        fired, survived = int(_field(x, "fired")), int(_field(x, "survived"))
        survived = max(0, min(fired, survived))
        inject_lines.append(InjectLine(kind=str(_field(x, "kind")), description=str(_field(x, "description")),
                                       fired=fired, survived=survived, retried=int(_field(x, "retried") or 0),
                                       result=inject_result(fired, survived)))
    approvers = _approvers(timeline, [str(_field(b, 'user')) for b in scenario.approvers])

    def share(flags: list[bool]) -> float:
        return sum(flags) / len(flags) if flags else 1.0

    went_off = [i for i in inject_lines if i.fired > 0]  # a never-fired inject proves nothing either way
    scored = [p for p in probes if p.scored]
    components = {
        "probes": share([p.passed for p in scored]),
        "targets": share(targets_met),
        "faults_survived": sum(i.survived / i.fired for i in went_off) / len(went_off) if went_off else 1.0,
        "approver_response": share([a.decision != "none" for a in approvers]),
    }
    score = round(sum(WEIGHTS[k] * v for k, v in components.items()))
    engine_retries = sum(1 for e in timeline if e.get("kind") == "item.retrying")
    aws_retries = sum(i.retried for i in inject_lines)
    return Scorecard(
        scenario=scenario.name, title=scenario.title, runbook=scenario.runbook, incident_id=incident_id,
        started_at=started_at.isoformat(), finished_at=finished_at.isoformat(), outcome=outcome, score=score,
        passed=all(p.passed for p in scored) and all(targets_met) and not harness_problems,
        time_to_contain_s=ttc, target_time_to_contain_s=target_ttc,
        time_to_first_decision_s=ttfd, target_time_to_first_decision_s=target_ttfd,
        time_to_last_containment_s=ttlc, probes=probes, approvers=approvers, injects=inject_lines,
        retries=engine_retries + aws_retries, retries_engine=engine_retries, retries_aws=aws_retries,
        weights=dict(WEIGHTS), components={k: round(v, 4) for k, v in components.items()},
        harness_problems=list(harness_problems))


# ------------------------------------------------------------------ markdown


def _cell(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _secs(value: float | None) -> str:
    return "—" if value is None else f"{value:g}s"


def _met(measured: float | None, target: float | None, applicable: bool = True) -> str:
    if target is None or not applicable:
        return "n/a"
    return "✅ met" if measured is not None and measured <= target else "❌ missed"


def _probe_result(p: ProbeLine) -> str:
    if not p.scored:
        return "baseline" if p.passed else "baseline not recorded"
    return "✅ pass" if p.passed else "❌ FAIL"


def render_markdown(sc: Scorecard) -> str:
    """``scorecard.md``: verdict, targets, probes (failures with what was observed), approvers,
    injects, retries and how the score was made."""
    verdict = "PASSED" if sc.passed else "FAILED"
    out = [
        f"# DRILL scorecard: {sc.title or sc.scenario}",
        "",
        f"**{verdict}** · score **{sc.score}/100** · outcome `{sc.outcome}`",
        "",
        f"Scenario `{sc.scenario}` · runbook `{sc.runbook}` · incident `{sc.incident_id}`  ",
        f"Started {sc.started_at} · finished {sc.finished_at}",
        "",
        *(["**The drill did not run as scripted** (so it cannot pass):", "",
           *[f"- {_cell(h, 400)}" for h in sc.harness_problems], ""] if sc.harness_problems else []),
        "## Targets",
        "",
        "| target | measured | target | result |",
        "|---|---|---|---|",
        f"| time to contain | {_secs(sc.time_to_contain_s)} | {_secs(sc.target_time_to_contain_s)} | "
        f"{_met(sc.time_to_contain_s, sc.target_time_to_contain_s)} |",
        f"| time to first decision | {_secs(sc.time_to_first_decision_s)} | "
        f"{_secs(sc.target_time_to_first_decision_s)} | "
        f"{_met(sc.time_to_first_decision_s, sc.target_time_to_first_decision_s, bool(sc.approvers))} |",
        f"| time to last containment | {_secs(sc.time_to_last_containment_s)} | — | n/a |",
        "",
        "Time to contain runs from the first `run.started` to the last `run.finished` that succeeded, so it "
        "includes waiting for approvals after containment (e.g. a clean-up gate); time to last containment "
        "ends at the last containment step that succeeded (mutating, not a notification).",
        "",
        "## Probes",
        "",
    ]
    if sc.probes:
        out += ["| phase | probe | result | detail |", "|---|---|---|---|"]
        out += [f"| {p.phase} | {_cell(p.name)} | {_probe_result(p)} | {_cell(p.detail)} |" for p in sc.probes]
        failed = sc.failed_probes
        if failed:
            out += ["", "Failed probes, with what was observed:", ""]
            out += [f"- **{p.name}** ({p.phase}): expected {p.expected}; observed `{_cell(p.observed, 400)}`"
                    for p in failed]
    else:
        out.append("No probes.")
    out += ["", "## Approvers", ""]
    if sc.approvers:
        out += ["| approver | step | decision | response |", "|---|---|---|---|"]
        out += [f"| `{a.user}` | {a.step} | {a.decision if a.decision != 'none' else 'never answered'} | "
                f"{_secs(a.response_s)} |" for a in sc.approvers]
    else:
        out.append("No approval was requested.")
    out += ["", "## Injects", ""]
    if sc.injects:
        out += ["| inject | fired | survived | retried | result |", "|---|---|---|---|---|"]
        out += [f"| {_cell(i.description)} | {i.fired} | {i.survived} | {i.retried} | {i.result} |"
                for i in sc.injects]
    else:
        out.append("No injects.")
    out += ["", f"Retries: {sc.retries} ({sc.retries_engine} by the engine, {sc.retries_aws} AWS calls "
                "attempted again after an injected fault)", "", "## Score", "",
            "| component | weight | achieved | points |", "|---|---|---|---|"]
    for k, w in sc.weights.items():
        share = sc.components.get(k, 0.0)
        out.append(f"| {k.replace('_', ' ')} | {w} | {share:.0%} | {w * share:.1f} |")
    out += [f"| **total** | 100 | | **{sc.score}** |", ""]
    return "\n".join(out)
