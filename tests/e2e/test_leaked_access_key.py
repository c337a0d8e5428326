"""runbooks/leaked-access-key.yaml end to end on the ``leaked-key`` sandbox fleet: real Prefect flow,
boto3 over HTTP to moto, slack_sdk to the stand-in, an approval decided the way Slack sends it.
A first run whose clean-up is declined (on_deny: skip) still ends contained, with the key Inactive
but not deleted; a second, approved run cleans up. Assertions read IAM, Secrets Manager and Slack
(the when: always close-out in #security) back and compare them with what the runbook meant."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from postmortem_golden import check_postmortem_golden
from sandboxes import seeded_sandbox
from typer.testing import CliRunner

from flows.engine.approvals import submit_decision
from flows.engine.runtime import run_runbook
from flows.entrypoints.cli import app
from integrations.aws.session import clients_for
from integrations.sandbox import Sandbox, observe
from integrations.settings import StanchSettings

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "leaked-access-key.yaml"
GOLDEN = Path(__file__).parent / "golden" / "plan_leaked_access_key.txt"
BILLING = "333333333333"


@pytest.fixture(scope="module")
def leaked(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Iterator[Sandbox]:
    with pytest.MonkeyPatch.context() as mp:
        yield from seeded_sandbox(tmp_path_factory.mktemp("leaked"), mp, fleet_variant="leaked-key")


def _iam(sb: Sandbox) -> Any:
    return clients_for(StanchSettings(aws_endpoint_url=sb.url), BILLING, "us-east-1")("iam")


def _events(folder: Path) -> list[dict[str, Any]]:
    path = folder / "timeline.jsonl"
    return [json.loads(x) for x in path.open()] if path.exists() else []


def _wait_for(folder: Path, kind: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e["kind"] == kind for e in _events(folder)):
            return
        time.sleep(0.1)
    raise AssertionError(f"no {kind} in {[e['kind'] for e in _events(folder)]}")


def _plan_golden_and_side_effect_free(leaked: Sandbox) -> None:
    """`stanch plan` against the seeded fleet equals the golden file and changes nothing (one
    sandbox per module: run first, inside the end-to-end test, so xdist never splits them)."""
    fleet = leaked.fleet
    assert fleet is not None and fleet.leaked_access_key_id and leaked.state is not None
    args = ["plan", "leaked-access-key", "--input", f"access_key_id={fleet.leaked_access_key_id}",
            "--input", "leaked_at=https://github.com/example-org/reporting/commit/1a2b3c"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    got = re.sub(r"AKIA[A-Z0-9]{16}", "AKIA<key-id>", result.output.replace(str(leaked.state.inventory_path),
                                                                            "<inventory>"))
    if os.environ.get("STANCH_UPDATE_GOLDEN"):
        GOLDEN.write_text(got)
    assert got == GOLDEN.read_text()
    assert set(observe.access_key_statuses(leaked.url, BILLING, "svc-reporting").values()) == {"Active"}
    assert _iam(leaked).list_user_policies(UserName="svc-reporting")["PolicyNames"] == []


def _start(key: str, store: Path, incident: str) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        box["state"] = run_runbook(str(RUNBOOK), {"access_key_id": key, "leaked_at": "a public gist"}, incident,
                                   str(store), True, "slack:U0ONCALL", return_state=True)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    _wait_for(store / incident, "approval.requested")
    return t, box


def _security(sb: Sandbox, incident: str) -> list[str]:
    """The close-out messages the security channel got about ``incident`` (read back from the Slack
    stand-in; a drill run prefixes ``[DRILL]``)."""
    return [m["text"] for m in sb.slack.messages("C0SECURITY")  # type: ignore[union-attr]
            if m["text"].startswith(f"[DRILL] {incident}:")]


def test_contains_exactly_the_key_then_cleans_up_after_approval(leaked: Sandbox, tmp_path: Path) -> None:
    _plan_golden_and_side_effect_free(leaked)
    fleet = leaked.fleet
    assert fleet is not None and fleet.leaked_access_key_id
    key = fleet.leaked_access_key_id
    (other,) = [k for k in fleet.users["svc-reporting"].access_key_ids if k != key]
    iam = _iam(leaked)
    store = tmp_path / "store"

    # 1. the clean-up is declined (on_deny: skip): the incident is still contained and succeeds
    t, box = _start(key, store, "INC-LEAK-0")
    # contained before anyone decided: exactly the leaked key Inactive, its user denied
    assert observe.access_key_statuses(leaked.url, BILLING, "svc-reporting") == {key: "Inactive", other: "Active"}
    doc = iam.get_user_policy(UserName="svc-reporting", PolicyName="StanchDenyAll")["PolicyDocument"]
    (stmt,) = doc["Statement"]
    assert (stmt["Effect"], stmt["Action"], stmt["Resource"], stmt.get("Condition")) == ("Deny", "*", "*", None)
    told = [c["params"] for c in leaked.slack.calls("chat.postMessage")  # type: ignore[union-attr]
            if key in json.dumps(c["params"])]
    assert any("svc-reporting" in json.dumps(p) and "a public gist" in json.dumps(p) for p in told), told
    # the approval request was rendered with the key and its user (never the literal template)
    asked = next(e for e in _events(store / "INC-LEAK-0") if e["kind"] == "approval.requested")["data"]["message"]
    assert f"Leaked key {key} of IAM user svc-reporting (account {BILLING})" in asked and "{{" not in asked
    submit_decision(store, "INC-LEAK-0", "approve-cleanup", "slack:U0LEAD1", False, "keep it for forensics")
    t.join(90)
    assert box["state"].is_completed(), box["state"].message
    assert box["state"].result()["declined_steps"] == ["approve-cleanup"]
    # nothing cleaned up: the key is still there (Inactive, not deleted), the other key untouched
    assert observe.access_key_statuses(leaked.url, BILLING, "svc-reporting") == {key: "Inactive", other: "Active"}
    assert iam.list_user_policies(UserName="svc-reporting")["PolicyNames"] == ["StanchDenyAll"]
    (closing,) = _security(leaked, "INC-LEAK-0")
    assert f"INC-LEAK-0: leaked key {key} — run succeeded." in closing
    assert "Clean-up declined: the key stays Inactive and is not deleted" in closing

    # 2. the same key again, approved this time: the key is deleted, the other key rotated
    incident = "INC-LEAK-1"
    t, box = _start(key, store, incident)
    folder = store / incident
    submit_decision(store, incident, "approve-cleanup", "slack:U0LEAD1", True, "checked CloudTrail")
    t.join(90)
    assert box["state"].is_completed(), box["state"].message
    summary = check_postmortem_golden(folder, "postmortem_summary_leaked_access_key.md")
    assert "`aws.iam`" in summary and "What failed:\n- nothing." in summary

    # after approval: the key is gone, the other key rotated into Secrets Manager
    now = observe.access_key_statuses(leaked.url, BILLING, "svc-reporting")
    assert key not in now and now[other] == "Inactive"
    (new,) = [k for k, s in now.items() if s == "Active"]
    stored = json.loads(observe.secret_value(leaked.url, BILLING, "stanch/access-keys/svc-reporting")["value"])
    assert stored["access_key_id"] == new
    # the secret never reached the incident folder (timeline, reports, post-mortem) or Slack
    everything = "".join(p.read_text() for p in folder.rglob("*") if p.is_file())
    assert stored["secret_access_key"] not in everything
    assert stored["secret_access_key"] not in json.dumps(leaked.slack.calls("chat.postMessage"))  # type: ignore[union-attr]
    # nobody else touched
    etl = fleet.users["svc-etl"]
    assert set(observe.access_key_statuses(leaked.url, BILLING, "svc-etl").values()) == {"Active"}
    assert len(observe.access_key_statuses(leaked.url, BILLING, "svc-etl")) == len(etl.access_key_ids)
    assert iam.list_user_policies(UserName="svc-etl")["PolicyNames"] == []
    for svc in fleet.services.values():
        assert set(observe.access_key_statuses(leaked.url, svc.account, svc.ci_user).values()) == {"Active"}
    # the when: always close-out reached the security channel with the run's outcome
    (closing,) = _security(leaked, incident)
    assert f"{incident}: leaked key {key} — run succeeded." in closing
    assert f"Clean-up: deleted {key}; rotated 1 other key(s) into Secrets Manager." in closing

