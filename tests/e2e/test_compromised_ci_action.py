"""runbooks/compromised-ci-action.yaml end to end on the ``ci-action`` sandbox fleet (tj-actions/
changed-files, GHSA-mrrh-fwg8-r2c3): only the pipelines that ran an affected tag or commit get their
CI keys and secrets rotated, and each affected repository gets its own pin-to-SHA instructions in
Slack — read back from moto and from the Slack stand-in."""

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
from sandboxes import seeded_sandbox
from typer.testing import CliRunner

from flows.engine.approvals import submit_decision
from flows.engine.runtime import run_runbook
from flows.entrypoints.cli import app
from integrations.sandbox import Sandbox, observe
from integrations.sandbox.fleet_library import BAD_COMMIT, V46_SHA

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "compromised-ci-action.yaml"
GOLDEN = Path(__file__).parent / "golden" / "plan_compromised_ci_action.txt"
AFFECTED = ("desktop-app", "web-dashboard")


@pytest.fixture(scope="module")
def ci(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Iterator[Sandbox]:
    with pytest.MonkeyPatch.context() as mp:
        yield from seeded_sandbox(tmp_path_factory.mktemp("ci"), mp, fleet_variant="ci-action")


def _normalise(text: str, inventory: str) -> str:
    text = text.replace(inventory, "<inventory>")
    text = re.sub(r"AKIA[A-Z0-9]{16}", "AKIA<key-id>", text)
    return re.sub(r"(secret:[\w/+=.@-]+?)-[A-Za-z0-9]{6}\b", r"\1-<suffix>", text)


def _plan_golden_and_side_effect_free(ci: Sandbox) -> None:
    """`stanch plan` against the seeded fleet equals the golden file and changes nothing (one
    sandbox per module: run first, inside the end-to-end test, so xdist never splits them)."""
    assert ci.state is not None
    result = CliRunner().invoke(app, ["plan", "compromised-ci-action"])
    assert result.exit_code == 0, result.output
    got = _normalise(result.output, str(ci.state.inventory_path))
    if os.environ.get("STANCH_UPDATE_GOLDEN"):
        GOLDEN.write_text(got)
    assert got == GOLDEN.read_text()


def _wait_for(folder: Path, kind: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    path = folder / "timeline.jsonl"
    while time.monotonic() < deadline:
        if path.exists() and any(json.loads(x)["kind"] == kind for x in path.open()):
            return
        time.sleep(0.1)
    raise AssertionError(f"no {kind} in {path}")


def test_rotates_only_affected_pipelines_and_posts_pin_instructions(ci: Sandbox, tmp_path: Path) -> None:
    _plan_golden_and_side_effect_free(ci)
    fleet = ci.fleet
    assert fleet is not None
    secret_before = {name: observe.secret_value(ci.url, fleet.services[name].account, arns[0])
                     for name, arns in fleet.ci_secrets.items()}
    store, incident = tmp_path / "store", "INC-CI-1"
    box: dict[str, Any] = {}

    def run() -> None:
        box["state"] = run_runbook(str(RUNBOOK), {}, incident, str(store), True, "slack:U0ONCALL", return_state=True)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    _wait_for(store / incident, "approval.requested")
    for name in AFFECTED:  # contained before the approval: keys off, secrets rotated
        svc = fleet.services[name]
        assert set(observe.access_key_statuses(ci.url, svc.account, svc.ci_user).values()) == {"Inactive"}, name
    asked = next(json.loads(x) for x in (store / incident / "timeline.jsonl").open()
                 if json.loads(x)["kind"] == "approval.requested")["data"]["message"]
    assert asked.startswith("GHSA-mrrh-fwg8-r2c3: the CI keys of ") and "{{" not in asked, asked
    assert all(fleet.services[n].ci_user in asked for n in AFFECTED), asked
    submit_decision(store, incident, "approve-reissue", "slack:U0LEAD2", True)
    t.join(90)
    assert box["state"].is_completed(), box["state"].message

    for name, svc in fleet.services.items():
        keys = observe.access_key_statuses(ci.url, svc.account, svc.ci_user)
        secret = observe.secret_value(ci.url, svc.account, fleet.ci_secrets[name][0])
        if name in AFFECTED:
            assert not set(keys) & set(svc.access_key_ids), name       # old keys deleted
            assert list(keys.values()) == ["Active"], name               # exactly one new key
            stored = json.loads(observe.secret_value(ci.url, svc.account, f"ci/{name}/aws-access-key")["value"])
            assert stored["access_key_id"] in keys, name
            assert secret["version_id"] != secret_before[name]["version_id"], name
            assert secret["value"] != secret_before[name]["value"], name
        else:  # billing-api pinned the clean v46.0.1 SHA: untouched
            assert keys == dict.fromkeys(svc.access_key_ids, "Active"), name
            assert secret["version_id"] == secret_before[name]["version_id"], name

    posts = [c["params"] for c in ci.slack.calls("chat.postMessage")]  # type: ignore[union-attr]
    pins = [p for p in posts if V46_SHA in json.dumps(p)]
    by_repo = {r: [p for p in pins if f"example-org/{r}:" in json.dumps(p)] for r in fleet.services}
    assert [len(by_repo[r]) for r in AFFECTED] == [1, 1] and by_repo["billing-api"] == []
    assert "tj-actions/changed-files@v45" in json.dumps(by_repo["desktop-app"][0])
    assert BAD_COMMIT in json.dumps(by_repo["web-dashboard"][0])
    assert "desktop-app" not in json.dumps(by_repo["web-dashboard"][0])   # each repository: its own only
    # the when: always summary reached the incident channel with the run's outcome
    (summary,) = [m["text"] for m in ci.slack.messages("C0INCIDENT")  # type: ignore[union-attr]
                  if m["text"].startswith(f"[DRILL] {incident} (GHSA-mrrh-fwg8-r2c3): run ")]
    assert "run succeeded. CI keys switched off for 2 pipeline(s)" in summary, summary
    assert "2 CI user(s) re-keyed." in summary and "FAILED" not in summary, summary
    everything = "".join(p.read_text() for p in (store / incident).rglob("*") if p.is_file())
    for name in AFFECTED:
        new = observe.secret_value(ci.url, fleet.services[name].account, fleet.ci_secrets[name][0])["value"]
        assert new not in everything and new not in json.dumps(posts)
