"""Scope robustness: one bad file in one service never hides the other services.

Each hostile file of ``tests/hostile/inventory/`` is listed by one service of an inventory that
also has a healthy affected service (legacy-admin, axios 0.30.4). The healthy service must be
reported, the hostile one named with its file in ``errors`` / the table / the CLI output, and the
CLI must exit 0 (the run-level inputs were fine), never with a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flows.entrypoints.cli import app
from integrations.base import ActionContext, ActionRegistry, PermanentActionError
from integrations.inventory import register, scope
from integrations.settings import StanchSettings

HOSTILE = Path(__file__).resolve().parents[2] / "hostile" / "inventory"
FLEET = Path(__file__).resolve().parents[2] / "fixtures" / "inventory" / "fleet"
runner = CliRunner()

# service name -> (inventory field, hostile file, what the error must say)
CASES: dict[str, tuple[str, str, str]] = {
    "binary-lock": ("lockfiles", "binary.package-lock.json", "binary file"),
    "latin1-reqs": ("lockfiles", "latin1.requirements.txt", "not UTF-8"),
    "truncated-lock": ("lockfiles", "truncated.package-lock.json", "cannot read as npm-lock"),
    "array-manifest": ("manifests", "array.package.json", "a package.json is a JSON object"),
    "directory-lock": ("lockfiles", "a-directory.package-lock.json", "is a directory, not a file"),
    "garbage-history": ("install_history", "garbage.installs.csv", "no readable time"),
    "unreadable-lock": ("lockfiles", "/proc/self/mem", "cannot read"),
}


def _inventory(tmp_path: Path) -> Path:
    work = tmp_path / "fleet"
    shutil.copytree(HOSTILE, work / "hostile")
    shutil.copyfile(FLEET / "old-line.package-lock.json", work / "old-line.package-lock.json")
    services: list[dict[str, object]] = [
        {"name": "legacy-admin", "account": "444444444444", "lockfiles": ["old-line.package-lock.json"]}
    ]
    for i, (name, (fld, file, _)) in enumerate(CASES.items()):
        rel = file if file.startswith("/") else f"hostile/{file}"
        svc: dict[str, object] = {"name": name, "account": f"{500000000000 + i}"}
        if fld == "install_history":
            svc["lockfiles"] = ["old-line.package-lock.json"]
            svc[fld] = rel
        else:
            svc[fld] = [rel]
        services.append(svc)
    services.append(
        {
            "name": "skipped-lines",
            "account": "600000000000",
            "lockfiles": ["hostile/all-lines-skipped.requirements.txt"],
        }
    )
    inv = work / "inventory.yaml"
    inv.write_text(yaml.safe_dump({"services": services}), encoding="utf-8")
    return inv


def test_every_readable_service_is_reported_and_each_broken_one_named(tmp_path: Path) -> None:
    r = scope("MAL-2026-2307", _inventory(tmp_path))
    legacy = next(s for s in r.affected if s.name == "legacy-admin")
    assert legacy.pins == {"axios": "0.30.3"}
    by_service = {e.service: e for e in r.errors}
    verdicts = {v.name: v for v in r.services}
    for name, (_, file, says) in CASES.items():
        err = by_service[name]
        assert err.file is not None and err.file.endswith(Path(file).name), name
        assert says in err.error, (name, err.error)
        assert "Traceback" not in err.error
    # a service whose only file failed is "unreadable", never silently "unaffected"
    for name in ("binary-lock", "latin1-reqs", "truncated-lock", "directory-lock", "unreadable-lock"):
        assert verdicts[name].verdict == "unreadable", name
        assert name not in r.unaffected
    # garbage install history: the lockfile was still read (axios 0.30.4) -> affected, with the error
    hist = next(s for s in r.affected if s.name == "garbage-history")
    assert [e.file for e in hist.errors] == ["hostile/garbage.installs.csv"]
    assert any("skipped unreadable line 1" in w for w in r.warnings)
    assert not any("not a requirement" in w for w in r.warnings)  # a line number, never file content
    assert any("every requirement line was skipped (3)" in w and "all-lines-skipped" in w for w in r.warnings)


def test_cli_prints_errors_and_warnings_and_writes_them_to_json(tmp_path: Path) -> None:
    out = tmp_path / "scope.json"
    result = runner.invoke(
        app, ["scope", "MAL-2026-2307", "--inventory", str(_inventory(tmp_path)), "--json", str(out)],
        env={"COLUMNS": "400"},
    )
    assert result.exit_code == 0, result.output
    assert result.exception is None
    text = result.output
    flat = "".join(text.split())  # the table may wrap cells when the worker's console is narrow
    assert "0.30.3" in flat  # the healthy service's pin (its name may be cut in a narrow table)
    for name in CASES:
        assert f"error:service{name}:" in flat, name
    assert "unreadable" in text  # the table row
    assert "warning:" in text and "skippedunreadableline" in flat
    assert "everyrequirementlinewasskipped" in flat
    data = json.loads(out.read_text())
    assert {e["service"] for e in data["errors"]} == set(CASES)
    assert any(s["name"] == "legacy-admin" for s in data["affected"])
    assert any("skipped unreadable line" in w for w in data["warnings"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads mode-000 files")
def test_mode_000_file_is_named(tmp_path: Path) -> None:
    inv = _inventory(tmp_path)
    locked = inv.parent / "old-line.package-lock.json"
    locked.chmod(0)
    try:
        r = scope("MAL-2026-2307", inv)
    finally:
        locked.chmod(0o644)
    assert any(e.service == "legacy-admin" and "permission denied" in e.error for e in r.errors)


def test_empty_inventory_is_said_in_the_terminal(tmp_path: Path) -> None:
    inv = tmp_path / "inventory.yaml"
    inv.write_text("services: []\n", encoding="utf-8")
    result = runner.invoke(app, ["scope", "MAL-2026-2307", "--inventory", str(inv)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "lists no services (services: [])" in result.output


@pytest.mark.parametrize("kind", ["missing-folder", "directory"])
def test_cli_json_into_a_bad_path_is_a_clear_error(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "missing" / "dir" / "out.json" if kind == "missing-folder" else tmp_path
    result = runner.invoke(app, ["scope", "MAL-2026-2307", "--inventory", str(FLEET / "inventory.yaml"),
                                 "--json", str(target)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "--json" in result.output and ("does not exist" in result.output or "is a directory" in result.output)
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "inventory",
    ["a-directory.package-lock.json", "binary.package-lock.json", "does-not-exist.yaml"],
)
def test_unreadable_inventory_is_a_run_level_error_exit_2(inventory: str) -> None:
    result = runner.invoke(app, ["scope", "MAL-2026-2307", "--inventory", str(HOSTILE / inventory)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.strip()


@pytest.mark.parametrize(
    ("advisory", "says"),
    [
        ("binary.package-lock.json", "not UTF-8"),
        ("truncated.package-lock.json", "not JSON"),
        ("a-directory.package-lock.json", "advisory"),
    ],
)
def test_hostile_advisory_path_is_a_run_level_error_exit_2(advisory: str, says: str) -> None:
    result = runner.invoke(app, ["scope", str(HOSTILE / advisory), "--inventory", str(FLEET / "inventory.yaml")])
    assert result.exit_code == 2, result.output
    assert says in result.output and "Traceback" not in result.output


def test_cli_reversed_window_exits_2() -> None:
    result = runner.invoke(app, ["scope", "MAL-2026-2307", "--inventory", str(FLEET / "inventory.yaml"),
                                 "--live-from", "2026-03-31T03:15:00Z", "--live-until", "2026-03-31T00:21:00Z"])
    assert result.exit_code == 2, result.output
    assert "reversed" in result.output


def test_action_refuses_a_reversed_window_as_a_permanent_error() -> None:
    reg = ActionRegistry()
    register(reg)
    ctx = ActionContext(incident_id="inc-1", step_id="scope", settings=StanchSettings())
    with pytest.raises(PermanentActionError, match="reversed"):
        reg.get("inventory.match_advisory").execute(
            ctx,
            {
                "advisory": "MAL-2026-2307",
                "inventory": str(FLEET / "inventory.yaml"),
                "live_from": "2026-03-31T03:15:00Z",
                "live_until": "2026-03-31T00:21:00Z",
            },
        )
