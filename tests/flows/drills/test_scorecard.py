"""The scorecard from a timeline, probe results and inject records: figures, score and the exact
``scorecard.md`` / ``scorecard.json`` (golden files in golden/; regenerate with
``STANCH_UPDATE_GOLDEN=1 pytest tests/flows/drills/test_scorecard.py`` and review the diff)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.drills.scenario import load_scenario, resolve_scenario
from flows.drills.scorecard import WEIGHTS, Scorecard, build_scorecard, render_markdown
from integrations.probes import ProbeResult

GOLDEN = Path(__file__).parent / "golden"
T0 = datetime(2026, 11, 30, 10, 0, 0, tzinfo=UTC)


def _ev(s: float, kind: str, step: str | None = None, actor: str | None = None, **data: Any) -> dict[str, Any]:
    return {"ts": (T0 + timedelta(seconds=s)).isoformat(), "kind": kind, "step": step, "actor": actor, "data": data}


def _ok(name: str, observed: Any = None) -> ProbeResult:
    return ProbeResult(name, True, observed or {}, "as expected", "ok")


def _check_golden(name: str, card: Scorecard) -> None:
    md, js = render_markdown(card), json.dumps(card.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    if os.environ.get("STANCH_UPDATE_GOLDEN"):
        (GOLDEN / f"{name}.scorecard.md").write_text(md, encoding="utf-8")
        (GOLDEN / f"{name}.scorecard.json").write_text(js, encoding="utf-8")
    assert md == (GOLDEN / f"{name}.scorecard.md").read_text(encoding="utf-8")
    assert js == (GOLDEN / f"{name}.scorecard.json").read_text(encoding="utf-8")


def test_acm_access_denied_fails_and_names_the_probe_and_account() -> None:
    sc = load_scenario(resolve_scenario("acm-access-denied"))
    serial = "5a1e0c0ffee"
    timeline = [
        _ev(0, "run.started"), _ev(0.5, "step.started", "scope"), _ev(2, "step.succeeded", "revoke-ci-keys"),
        _ev(3, "item.retrying", "rotate-signing-cert"), _ev(4, "item.retrying", "rotate-signing-cert"),
        _ev(6, "item.retrying", "rotate-signing-cert"), _ev(9, "step.failed", "rotate-signing-cert"),
        _ev(9.5, "run.finished", outcome="failed", failed_steps=["rotate-signing-cert"]),
    ]
    after = [
        _ok("iam.ci_keys_inactive"), _ok("iam.keys_untouched"),
        ProbeResult("acm.certificate_reissued", False,
                    {"desktop-app": {"account": "222222222222", "serial": serial, "before": serial}},
                    "a new certificate serial at the same ARN for every affected service",
                    f"desktop-app in account 222222222222: serial unchanged ({serial}) at arn:aws:acm:…/desktop"),
        _ok("secretsmanager.secret_matches_certificate"),
        ProbeResult("s3.manifest_pins_safe_version", False, {"desktop-app": {"pinned": {"axios": "^1.6.0"}}},
                    "the release manifest pins the safe versions",
                    "desktop-app in account 222222222222: axios pinned to '^1.6.0', expected '1.14.0'"),
        ProbeResult("ses.one_email_per_address", False, {}, "each affected audience address got exactly one e-mail",
                    "ana@customer-one.example: 0 e-mails"),
        _ok("slack.report_per_step"),
    ]
    card = build_scorecard(
        sc, incident_id="INC-20261130-0001", timeline=timeline,
        probe_results={"before": [_ok("iam.keys_untouched"), _ok("acm.certificate_reissued")], "after": after,
                       "continuous": []},
        injects=[{"kind": "aws_fault", "description": "AccessDenied on acm:ImportCertificate in account 222222222222",
                  "fired": 4, "survived": 0, "retried": 3}],
        started_at=T0 - timedelta(seconds=3), finished_at=T0 + timedelta(seconds=12))
    assert not card.passed and card.outcome == "failed" and card.time_to_contain_s is None
    assert (card.retries, card.retries_engine, card.retries_aws) == (6, 3, 3) and card.target_time_to_contain_s == 300
    failed = [(p.phase, p.name) for p in card.failed_probes]
    assert ("after", "acm.certificate_reissued") in failed
    assert "222222222222" in card.failed_probes[0].detail
    assert [(p.phase, p.name, p.scored) for p in card.probes[:2]] == [
        ("before", "iam.keys_untouched", True), ("before", "acm.certificate_reissued", False)]  # a baseline
    assert card.injects[0].result == "not survived"
    # probes 5/8 (the certificate's baseline is not scored), targets 0/1, faults survived 0/1, approvers n/a
    assert card.score == round(WEIGHTS["probes"] * 5 / 8 + WEIGHTS["approver_response"]) == 41
    _check_golden("acm-access-denied", card)


def test_approvers_and_targets() -> None:
    sc = load_scenario(resolve_scenario("approver-silent"))
    timeline = [
        _ev(0, "run.started"),
        _ev(1, "approval.requested", "approve-revoke", approvers=["U0LEAD1", "U0ONCALL1"], min_approvals=1),
        _ev(5.5, "approval.approved", "approve-revoke", "slack:U0LEAD1", approver="slack:U0LEAD1"),
        _ev(5.5, "approval.granted", "approve-revoke"),
        _ev(6, "approval.requested", "second-approval", approvers=["U0ONCALL1"], min_approvals=1),
        _ev(36, "approval.expired", "second-approval"),
        _ev(40, "run.started"),  # a resume: time to contain runs from the first start
        _ev(42.25, "run.finished", outcome="succeeded"),
    ]
    card = build_scorecard(
        sc, incident_id="INC-20261130-0002", timeline=timeline,
        probe_results={"before": [], "after": [_ok("iam.leaked_key_contained", {"leaked": "Inactive"})],
                       "continuous": []},
        injects=[], started_at=T0, finished_at=T0 + timedelta(seconds=50))
    assert card.passed and card.time_to_contain_s == 42.25 and card.time_to_first_decision_s == 4.5
    assert [(a.user, a.step, a.decision, a.response_s) for a in card.approvers] == [
        ("U0LEAD1", "approve-revoke", "approve", 4.5), ("U0ONCALL1", "approve-revoke", "none", None),
        ("U0ONCALL1", "second-approval", "none", None)]
    assert card.components == {"probes": 1.0, "targets": 1.0, "faults_survived": 1.0, "approver_response": 0.3333}
    assert card.score == 93  # 50 + 25 + 15 + 10 / 3
    md = render_markdown(card)
    assert "| `U0ONCALL1` | second-approval | never answered | — |" in md  # no re-paging from the scorecard
    _check_golden("approvers", card)


def test_group_approval_is_expanded_to_each_person_of_the_scenario() -> None:
    """``approvers: ["@security-leads"]`` in the runbook: the scorecard shows each paged person."""
    sc = load_scenario(resolve_scenario("approver-silent"))  # U0LEAD1 and U0LEAD2, both silent
    timeline = [_ev(0, "run.started"),
                _ev(1, "approval.requested", "approve-cleanup", approvers=["@security-leads"], min_approvals=1),
                _ev(2.5, "approval.approved", "approve-cleanup", "slack:U0LEAD2", approver="slack:U0LEAD2"),
                _ev(2.5, "approval.granted", "approve-cleanup"), _ev(3, "run.finished", outcome="succeeded")]
    card = build_scorecard(sc, incident_id="I", timeline=timeline, probe_results={}, injects=[],
                           started_at=T0, finished_at=T0)
    assert [(a.user, a.decision, a.response_s) for a in card.approvers] == [
        ("U0LEAD1 via @security-leads", "none", None), ("U0LEAD2 via @security-leads", "approve", 1.5)]


@pytest.mark.parametrize(("ttc_end", "passed"), [(299, True), (301, False)])
def test_time_to_contain_target(ttc_end: float, passed: bool) -> None:
    sc = load_scenario(resolve_scenario("clean"))
    card = build_scorecard(sc, incident_id="I", timeline=[_ev(0, "run.started"),
                                                          _ev(ttc_end, "run.finished", outcome="succeeded")],
                           probe_results={}, injects=[], started_at=T0, finished_at=T0)
    assert card.passed is passed
    assert card.score == (100 if passed else 75)


def test_weights_sum_to_100() -> None:
    assert sum(WEIGHTS.values()) == 100
    doc = (Path(__file__).parents[3] / "docs" / "drills.md").read_text(encoding="utf-8")
    for k, w in WEIGHTS.items():
        assert f"| `{k}` | {w} |" in doc


def test_only_injects_that_fired_are_scored_and_baselines_are_not() -> None:
    """A fault that never fired proves nothing (neither survived nor not); a partly survived one
    scores its share; a before-probe that only records a baseline does not count, even failed."""
    sc = load_scenario(resolve_scenario("clean"))
    timeline = [_ev(0, "run.started"), _ev(10, "run.finished", outcome="succeeded")]
    baseline_failed = ProbeResult("acm.certificate_reissued", False, None, "a baseline", "could not observe: boom")
    injects = [{"kind": "aws_fault", "description": "never", "fired": 0, "survived": 0, "retried": 0},
               {"kind": "aws_fault", "description": "all", "fired": 5, "survived": 5, "retried": 5},
               {"kind": "aws_fault", "description": "some", "fired": 4, "survived": 1, "retried": 2}]
    card = build_scorecard(sc, incident_id="I", timeline=timeline,
                           probe_results={"before": [_ok("iam.keys_untouched"), baseline_failed]},
                           injects=injects, started_at=T0, finished_at=T0)
    assert [(i.description, i.result) for i in card.injects] == [
        ("never", "did not fire"), ("all", "survived"), ("some", "partly survived (1 of 4)")]
    assert card.components["faults_survived"] == (1 + 1 / 4) / 2 and card.components["probes"] == 1.0
    assert card.passed and card.failed_probes == [] and card.retries_aws == 7
    assert card.score == round(50 + 25 + 15 * 0.625 + 10)
    md = render_markdown(card)
    assert "| before | acm.certificate_reissued | baseline not recorded | could not observe: boom |" in md
    assert "| never | 0 | 0 | 0 | did not fire |" in md
    nothing_fired = build_scorecard(sc, incident_id="I", timeline=timeline, probe_results={}, injects=injects[:1],
                                    started_at=T0, finished_at=T0)
    assert nothing_fired.components["faults_survived"] == 1.0 and nothing_fired.score == 100


def test_a_scripted_step_the_harness_could_not_do_fails_the_drill_and_says_why() -> None:
    """A scripted approver whose decision the run refused: every probe and target may pass, yet the
    drill did not rehearse what the scenario says, so it fails and the scorecard names the cause."""
    sc = load_scenario(resolve_scenario("clean"))
    timeline = [_ev(0, "run.started"), _ev(5, "run.finished", outcome="succeeded")]
    problem = "scripted approver U0LEAD1 could not approve cleanup: no paused run takes decisions for INC-1"
    card = build_scorecard(sc, incident_id="INC-1", timeline=timeline,
                           probe_results={"before": [], "after": [], "continuous": []}, injects=[],
                           started_at=T0, finished_at=T0 + timedelta(seconds=6), harness_problems=[problem])
    assert not card.passed and card.harness_problems == [problem]
    md = render_markdown(card)
    assert "**FAILED**" in md and "did not run as scripted" in md and problem in md
    clean = build_scorecard(sc, incident_id="INC-1", timeline=timeline,
                            probe_results={"before": [], "after": [], "continuous": []}, injects=[],
                            started_at=T0, finished_at=T0 + timedelta(seconds=6))
    assert clean.passed and "did not run as scripted" not in render_markdown(clean)
    # a scorecard.json written before the field existed still loads (history reads old ones)
    old = clean.model_dump(mode="json")
    del old["harness_problems"]
    assert Scorecard.model_validate(old).harness_problems == []


def test_time_to_last_containment_ends_at_the_last_containment_step() -> None:
    """approver-silent: the key is Inactive after 0.6 s, the run ends at 5.2 s after the clean-up
    approval expired: time to contain 5.2 s (it waits for the gate), time to last containment
    0.6 s (a later notification does not count); the runner names leaked-access-key's steps."""
    from flows.drills.runner import containment_steps
    from flows.engine.runbooks import resolve_runbook

    steps = containment_steps(resolve_runbook("leaked-access-key"))
    assert {"deactivate-key", "deny-user"} <= steps and not {"find-key", "tell-security", "close-out"} & steps
    sc = load_scenario(resolve_scenario("approver-silent"))
    timeline = [_ev(0, "run.started"), _ev(0.4, "step.succeeded", "find-key"),
                _ev(0.6, "step.succeeded", "deactivate-key"), _ev(1.0, "step.succeeded", "tell-security"),
                _ev(5.2, "run.finished", outcome="succeeded")]
    card = build_scorecard(sc, incident_id="I", timeline=timeline, probe_results={}, injects=[], started_at=T0,
                           finished_at=T0 + timedelta(seconds=6), containment_steps=steps)
    assert (card.time_to_contain_s, card.time_to_last_containment_s) == (5.2, 0.6)
    assert "| time to last containment | 0.6s | — | n/a |" in render_markdown(card)
    assert build_scorecard(sc, incident_id="I", timeline=timeline, probe_results={}, injects=[], started_at=T0,
                           finished_at=T0).time_to_last_containment_s is None  # no containment step named
