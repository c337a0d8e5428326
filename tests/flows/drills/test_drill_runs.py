"""Drills end to end: each drill gets its own sandbox process (real moto over HTTP, the Slack
stand-in), the runbook runs as a real ``stanch run --drill`` child against the session Prefect
server, and the scorecard is checked against what the probes read back from moto.

Cost: drills run two or three at a time in threads (that is also the isolation check: a fault
injected into one drill's sandbox never reaches the other's)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterTags,
)
from typer.testing import CliRunner

from flows.drills.runner import DrillResult, run_drill
from flows.entrypoints.cli import app

HERE = Path(__file__).parent / "scenarios"
BUNDLED = Path(__file__).parents[3] / "runbooks" / "drills"
THROTTLED = 2  # IAM calls throttled in iam-throttling-30pct with STANCH_SANDBOX_FAULT_SEED=7 (repeatable)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("drills")


def _together(store: Path, **drills: str | Path) -> dict[str, DrillResult]:
    """Run drills at once: a name is a test scenario (scenarios/<name>.yaml), a Path any scenario."""
    with ThreadPoolExecutor(len(drills)) as pool:
        futures = {inc: pool.submit(run_drill, name if isinstance(name, Path) else HERE / f"{name}.yaml",
                                    store=store, incident_id=inc.replace("_", "-"))
                   for inc, name in drills.items()}
        return {inc: f.result() for inc, f in futures.items()}


def _card(result: DrillResult) -> dict[str, Any]:
    card: dict[str, Any] = json.loads((result.folder / "scorecard.json").read_text())
    return card


def _events(result: DrillResult) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (result.folder / "timeline.jsonl").read_text().splitlines()]


def _artifacts(key: str) -> list[str]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return [str(a.data) for a in found]


def _after(card: dict[str, Any], probe: str) -> dict[str, Any]:
    return next(p for p in card["probes"] if p["phase"] == "after" and p["name"] == probe)


def _cli_drill(scenario: str, store: Path) -> tuple[int, str]:
    """By name: the bundled ready scenario (runbooks/drills/<name>.yaml)."""
    result = CliRunner().invoke(app, ["drill", "run", scenario, "--store", str(store)])
    return result.exit_code, result.output


def test_throttled_access_denied_late_discovery_each_in_its_own_sandbox(
        prefect_server: None, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``stanch drill run iam-throttling-30pct`` (CLI -> Prefect flow -> run_drill; the bundled
    scenario by name, its 30 % rate made repeatable by a seed) next to an AccessDenied drill, a
    throttled drill whose second affected service turns up mid-run (S3 503s once, ACM is slow), and
    leaked-access-key's ready clean drill."""
    monkeypatch.setenv("STANCH_SANDBOX_FAULT_SEED", "7")  # rate rules repeatable (integrations/sandbox/faults.py)
    with ThreadPoolExecutor(3) as pool:
        cli = pool.submit(_cli_drill, "iam-throttling-30pct", store / "cli")
        late_f = pool.submit(run_drill, HERE / "late-discovery-throttled.yaml", store=store,
                             incident_id="INC-DRILL-LATE")
        leaked_f = pool.submit(run_drill, BUNDLED / "leaked-access-key-clean.yaml", store=store,
                               incident_id="INC-DRILL-LEAKED")
        acm = run_drill(BUNDLED / "acm-access-denied.yaml", store=store, incident_id="INC-DRILL-ACM")
        code, output = cli.result()
        late = late_f.result()
        leaked = leaked_f.result()
    assert code == 0, output
    assert "Drill iam-throttling-30pct: PASSED" in output and "score 100/100" in output and "time to contain" in output
    folder = Path(output.split("scorecard: ", 1)[1].split()[0]).parent
    by_name = DrillResult(incident_id=folder.name, folder=folder, scorecard=None, exit_code=code)
    artifacts = _artifacts(f"drill-{folder.name.lower()}")
    assert len(artifacts) == 1 and "DRILL scorecard" in artifacts[0] and "100/100" in artifacts[0]

    card = _card(by_name)
    assert card["passed"] and card["score"] == 100 and card["outcome"] == "succeeded" and card["drill"]
    assert all(p["passed"] for p in card["probes"])
    phases = [p["phase"] for p in card["probes"]]
    assert phases.count("before") >= 1 and phases.count("after") >= 5
    assert card["time_to_contain_s"] < card["target_time_to_contain_s"]
    (inject,) = card["injects"]  # 30 % of IAM calls throttled, seeded: the same calls throttled every time
    assert (inject["fired"], inject["retried"], inject["survived"], inject["result"]) == (
        THROTTLED, THROTTLED, THROTTLED, "survived"), inject  # every throttled call was retried to a success
    assert (card["retries_aws"], card["retries_engine"]) == (THROTTLED, 0), card
    assert card["components"]["faults_survived"] == 1.0
    counted = _after(card, "aws.no_duplicate_side_effects")  # moto's count: each key switched off once
    assert counted["passed"] and sorted(counted["observed"]["UpdateAccessKey"].values()) == [1, 1], counted
    assert set(_after(card, "iam.ci_keys_inactive")["observed"]["desktop-app"]["keys"].values()) == {"Inactive"}
    assert "scorecard" in (by_name.folder / "scorecard.md").read_text().lower()
    # posted into the incident's Slack thread (the header the run recorded)
    assert not (folder / "scorecard.slack-error.txt").exists()
    # the run's home is the drill's folder inside the store; it signed with this installation's key
    verified = CliRunner().invoke(app, ["timeline", "verify", str(folder)], env={"COLUMNS": "300"})
    assert verified.exit_code == 0 and "head signed" in verified.output, verified.output
    # the drill's own flow run (stanch-drill) is tagged like the runbook run it started
    with get_client(sync_client=True) as client:
        outer = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=["scenario:iam-throttling-30pct"])),
            flow_filter=FlowFilter(name=FlowFilterName(any_=["stanch-drill"])))
    assert len(outer) == 1 and outer[0].name == "drill iam-throttling-30pct", [(r.name, r.tags) for r in outer]
    assert {"runbook:compromised-dependency", "drill", "severity:sev1"} <= set(outer[0].tags), outer[0].tags

    card = _card(acm)
    assert acm.exit_code == 1 and not card["passed"] and card["score"] < 100
    cert = _after(card, "acm.certificate_reissued")
    assert not cert["passed"] and "222222222222" in cert["detail"] and "desktop-app" in cert["detail"]
    assert _after(card, "iam.ci_keys_inactive")["passed"]  # containment up to the certificate happened
    assert card["injects"] == [{"kind": "aws_fault", "fired": 1, "survived": 0, "retried": 0, "result": "not survived",
                                "description": "AccessDenied on acm:ImportCertificate in account 222222222222 "
                                               "(every call)"}]
    assert "acm.certificate_reissued" in (acm.folder / "scorecard.md").read_text()
    header = next(e["data"] for e in _events(acm) if e["kind"] == "slack.header")
    assert acm.slack.endswith(f"(thread {header['ts']})"), acm.slack  # posted in the incident's thread
    # the runbook's own flow run (the drill's child) is filterable by scenario in the Prefect UI
    with get_client(sync_client=True) as client:
        tagged = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=["scenario:acm-access-denied"])))
    child = [r for r in tagged if r.parameters.get("incident_id") == "INC-DRILL-ACM"]
    assert child and {"runbook:compromised-dependency", "drill", "severity:sev1"} <= set(child[0].tags), \
        [(r.name, r.tags, r.parameters.get("incident_id")) for r in tagged]

    # throttled twice, S3 503 once (each retried by botocore to a success: survived), ACM 300 ms slower
    # on its one import; legacy-desktop appeared after the scope: not contained
    card = _card(late)
    assert late.exit_code == 1 and card["outcome"] == "succeeded"
    throttle, found, s3_5xx, slow = card["injects"]
    assert [(i["fired"], i["retried"], i["survived"], i["result"]) for i in (throttle, s3_5xx, slow)] == [
        (2, 2, 2, "survived"), (1, 1, 1, "survived"), (1, 0, 1, "survived")], card["injects"]
    assert slow["description"] == "+300 ms latency on acm:ImportCertificate (every call)"
    assert found["fired"] == 1 and "legacy-desktop" in found["description"] and card["retries_aws"] == 3
    keys = _after(card, "iam.ci_keys_inactive")
    assert not keys["passed"] and keys["detail"].startswith("legacy-desktop") and "desktop-app:" not in keys["detail"]

    # a ready scenario for another runbook: leaked-access-key, the lead approves the clean-up
    card = _card(leaked)
    assert leaked.exit_code == 0 and card["passed"], card
    assert [(a["user"], a["decision"]) for a in card["approvers"]] == [("U0LEAD1 via @security-leads", "approve")]
    assert card["harness_problems"] == []  # the scripted approval was taken by the run


def test_killed_slack_down_and_silent_approver(prefect_server: None, store: Path) -> None:
    with ThreadPoolExecutor(1) as pool:
        silent_f = pool.submit(run_drill, BUNDLED / "approver-silent.yaml", store=store, incident_id="INC-DRILL-SILENT")
        runs = _together(store, INC_DRILL_KILL=BUNDLED / "killed-mid-fanout.yaml",
                         INC_DRILL_SLACK=BUNDLED / "slack-down.yaml", INC_DRILL_APPROVERS="approvers")
        silent = silent_f.result()
    kill, slack, gated = runs["INC_DRILL_KILL"], runs["INC_DRILL_SLACK"], runs["INC_DRILL_APPROVERS"]

    # the 4 x 3 grid (fleet-grid's fleet: 3 affected in 3 accounts), killed right after the 2nd of 3
    # release manifests was stored (mid publish-update), resumed: what the probes read back from moto
    card = _card(kill)
    assert kill.exit_code == 0 and card["score"] == 100, (kill.folder / "scorecard.md").read_text()
    assert (card["injects"][0]["fired"], card["injects"][0]["result"]) == (1, "survived")
    inactive = _after(card, "iam.ci_keys_inactive")["observed"]
    assert sorted(inactive) == ["svc-01-01", "svc-02-01", "svc-03-01"]
    assert sorted({v["account"] for v in inactive.values()}) == ["400000000001", "400000000002", "400000000003"]
    assert all(set(v["keys"].values()) == {"Inactive"} for v in inactive.values())
    untouched = _after(card, "iam.keys_untouched")["observed"]
    assert len(untouched) == 9 and all(set(v["keys"].values()) == {"Active"} for v in untouched.values())
    certs = _after(card, "acm.certificate_reissued")["observed"]
    assert len(certs) == 3 and all(c["before"] and c["serial"] != c["before"] for c in certs.values()), certs
    assert sorted(_after(card, "ses.one_email_per_address")["observed"].values()) == [1] * 6
    # every side effect exactly once per target after the resume, as the sandbox counted them
    counted = _after(card, "aws.no_duplicate_side_effects")
    assert counted["passed"] and {op: sorted(t.values()) for op, t in counted["observed"].items()} == {
        "UpdateAccessKey": [1] * 6, "ImportCertificate": [1] * 3, "PutObject": [1] * 3, "SendEmail": [1] * 6,
        "PutSecretValue": [1] * 3}, counted
    assert all(t.startswith(("400000000001 ", "400000000002 ", "400000000003 "))
               for t in counted["observed"]["UpdateAccessKey"])
    # a continuous probe sampled every 2 s through the kill and the resume: nothing unaffected touched
    samples = [p for p in card["probes"] if p["phase"] == "continuous"]
    assert len(samples) >= 2 and all(p["passed"] and p["name"] == "iam.keys_untouched" for p in samples), samples
    assert all(len(p["observed"]) == 9 for p in samples)
    events = _events(kill)
    kinds = [e["kind"] for e in events]
    assert kinds.count("run.resumed") == 1
    resumed = kinds.index("run.resumed")  # the kill came between items: not all three were done
    done = [e for e in events[:resumed] if e["kind"] == "item.succeeded" and e["step"] == "publish-update"]
    assert len(done) < 3 and "publish-update" not in events[resumed]["data"]["already_done"], done

    # Slack down all run: containment still complete; the scorecard is posted once Slack is back
    card = _card(slack)
    assert slack.exit_code == 0 and card["passed"], (slack.folder / "scorecard.md").read_text()
    kinds = [e["kind"] for e in _events(slack)]
    assert "slack.unavailable" in kinds and "slack.header" not in kinds
    refused = card["injects"][0]["fired"]  # Slack calls the outage refused (each retried before giving up)
    assert slack.slack.startswith("ts ") and refused >= 1 and card["injects"][0]["result"] == "survived", refused

    # U0LEAD1 approves through the real approval path; U0LEAD2 never answers: the gate expires
    card = _card(gated)
    assert gated.exit_code == 1 and card["outcome"] == "failed"
    approvals = [(e["kind"], e["step"]) for e in _events(gated) if e["kind"].startswith("approval.")]
    assert ("approval.approved", "approve-revoke") in approvals
    assert ("approval.expired", "second-approval") in approvals
    assert card["harness_problems"] == [], card["harness_problems"]  # U0LEAD1's decision was counted
    assert card["time_to_first_decision_s"] is not None and card["time_to_first_decision_s"] < 60
    assert not _after(card, "iam.ci_keys_inactive")["passed"] and _after(card, "iam.keys_untouched")["passed"]

    # the bundled approver-silent: leaked-access-key's 2 h gate compressed to 3 s, @security-leads silent
    card = _card(silent)
    assert silent.exit_code == 1 and card["outcome"] == "succeeded", (silent.folder / "scorecard.md").read_text()
    requested = next(e["data"] for e in _events(silent) if e["kind"] == "approval.requested")
    assert requested["approvers"] == ["@security-leads"] and requested["runbook_expires_s"] == 7200
    assert [(a["user"], a["decision"]) for a in card["approvers"]] == [
        ("U0LEAD1 via @security-leads", "none"), ("U0LEAD2 via @security-leads", "none")]
    leaked = _after(card, "iam.leaked_key_contained")  # read back from moto: switched off, nothing rotated
    assert leaked["passed"] and leaked["observed"]["leaked"]["status"] == "Inactive", leaked
    others = leaked["observed"]["users"]["svc-reporting"]["keys"]
    assert sorted(others.values()) == ["Active", "Inactive"]  # the other key neither deleted nor rotated

