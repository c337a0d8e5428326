"""Compensation as a saga: a failure after three mutating steps leaves the fleet as it was."""

from __future__ import annotations

from pathlib import Path

from flows.engine.runtime import run_runbook
from integrations.sandbox import Sandbox, observe

HERE = Path(__file__).parent


def test_failure_after_three_mutations_restores_the_fleet(sandbox: Sandbox, tmp_path: Path) -> None:
    assert sandbox.state is not None and sandbox.fleet is not None
    desktop, web = sandbox.fleet.services["desktop-app"], sandbox.fleet.services["web-dashboard"]
    manifest_before = observe.release_manifest(sandbox.url, desktop.account, "desktop-app-releases",
                                               "release/latest.json")

    state = run_runbook(str(HERE / "saga.yaml"), {"inventory": str(sandbox.state.inventory_path)},
                        "INC-SAGA", str(tmp_path), True, "test", return_state=True)
    assert state.is_failed()

    assert set(observe.access_key_statuses(sandbox.url, desktop.account, desktop.ci_user).values()) == {"Active"}
    assert set(observe.access_key_statuses(sandbox.url, web.account, web.ci_user).values()) == {"Active"}
    manifest_after = observe.release_manifest(sandbox.url, desktop.account, "desktop-app-releases",
                                              "release/latest.json")
    # restored content (S3 keeps history: the restore is a new object version with the old body)
    assert {k: v for k, v in manifest_after.items() if k != "_version_id"} == \
        {k: v for k, v in manifest_before.items() if k != "_version_id"}

    pm = (tmp_path / "INC-SAGA" / "postmortem.md").read_text()
    assert "All 3 compensation(s) succeeded" in pm
    # newest first: revoke-web, publish, revoke-desktop
    section = pm.split("## Compensations (rollback)")[1].split("## Metrics")[0]
    done = [line.split("|")[2].strip() for line in section.splitlines() if "| succeeded |" in line]
    assert done == ["revoke-web", "publish", "revoke-desktop"]
