"""The flagship pins each service to the safe version of *its own* release line, and removes an
injected package instead of pinning the attacker's previous patch.

Real Prefect flow, real boto3 over HTTP to moto; the assertions read back the release manifests
``publish-update`` wrote to S3 and the notices SES recorded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandboxes import seeded_sandbox

from flows.engine.runtime import run_runbook
from flows.entrypoints.demo import DEMO_INPUTS
from integrations.sandbox import Sandbox, observe

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "compromised-dependency.yaml"


@pytest.fixture
def two_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: None) -> Iterator[Sandbox]:
    """The sandbox fleet variant with desktop-app on axios 1.14.1 and legacy-desktop on 0.30.4."""
    yield from seeded_sandbox(tmp_path, monkeypatch, fleet_variant="two-lines")


def _run(sb: Sandbox, tmp_path: Path, incident: str, **inputs: str) -> Path:
    assert sb.state is not None
    state = run_runbook(str(RUNBOOK), {**DEMO_INPUTS, "inventory": str(sb.state.inventory_path), **inputs},
                        incident, str(tmp_path / "store"), True, "test", return_state=True)
    assert state.is_completed(), state.message  # type: ignore[attr-defined]
    return tmp_path / "store" / incident


def test_each_service_is_pinned_to_its_own_release_line(two_lines: Sandbox, tmp_path: Path) -> None:
    fleet = two_lines.fleet
    assert fleet is not None
    folder = _run(two_lines, tmp_path, "INC-E2E-LINES")

    desktop, legacy = fleet.services["desktop-app"], fleet.services["legacy-desktop"]
    got = {}
    for svc in (desktop, legacy):
        assert svc.release_bucket and svc.release_key
        got[svc.name] = observe.release_manifest(two_lines.url, svc.account, svc.release_bucket, svc.release_key)
    assert got["desktop-app"]["pinned"] == {"axios": "1.14.0"}
    assert got["legacy-desktop"]["pinned"] == {"axios": "0.30.3"}  # not 1.14.0: the 0.x line's own fix
    for name, manifest in got.items():
        assert manifest["version"] == "4.2.1" and manifest["incident"] == "INC-E2E-LINES", name
        assert "removed" not in manifest, name
    assert "axios pinned to 0.30.3" in got["legacy-desktop"]["notes"]
    # both affected CI users were cut, the unaffected ones kept
    for svc in (desktop, legacy):
        assert set(observe.access_key_statuses(two_lines.url, svc.account, svc.ci_user).values()) == {"Inactive"}
    web = fleet.services["web-dashboard"]
    assert set(observe.access_key_statuses(two_lines.url, web.account, web.ci_user).values()) == {"Active"}

    # the run-level summary keeps one safe version per affected line
    events = [json.loads(line) for line in (folder / "timeline.jsonl").open()]
    scope_out = next(e for e in events if e["kind"] == "step.succeeded" and e["step"] == "scope")["data"]["output"]
    assert scope_out["safe_versions"] == {"axios": {"0.x": "0.30.3", "1.x": "1.14.0"}}
    pm = (folder / "postmortem.md").read_text()
    assert "axios 1.14.0 (1.x), 0.30.3 (0.x)" in pm
    assert "| legacy-desktop |" in pm and "axios 0.30.3 |" in pm


def test_injected_package_is_removed_not_pinned(sandbox: Sandbox, tmp_path: Path) -> None:
    """MAL-2026-2306 (plain-crypto-js, added by the malicious axios 1.14.1): the manifest says
    "removed" and pins no version of it (4.2.0, the previous patch, is the attacker's too)."""
    fleet = sandbox.fleet
    assert fleet is not None
    folder = _run(sandbox, tmp_path, "INC-E2E-INJECTED", advisory="MAL-2026-2306")
    desktop = fleet.services["desktop-app"]
    assert desktop.release_bucket and desktop.release_key
    manifest = observe.release_manifest(sandbox.url, desktop.account, desktop.release_bucket, desktop.release_key)
    assert manifest["pinned"] == {}
    assert manifest["removed"] == ["plain-crypto-js"]
    assert "plain-crypto-js removed" in manifest["notes"]
    assert "4.2.0" not in json.dumps(manifest)
    sent = observe.sent_emails(sandbox.url)
    assert sent and all("plain-crypto-js was removed" in (m.body or "") for m in sent)
    posts = sandbox.slack.calls("chat.postMessage")  # type: ignore[union-attr]
    assert any("plain-crypto-js removed" in json.dumps(c["params"]) for c in posts)
    pm = (folder / "postmortem.md").read_text()
    assert "**remove plain-crypto-js**" in pm
