"""docs/writing-actions.md's worked example: tests/fixtures/example-actions is a separate
distribution; installed (a dist-info with its entry points on sys.path, as an installer leaves it),
its actions join the registry through the ``stanch.integrations`` entry point, a runbook using them
validates, and they honour the contract (idempotent re-run, compensation, permanent errors)."""

from __future__ import annotations

import importlib
import importlib.metadata
import shutil
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.engine.spec import validate_file
from integrations.base import ActionContext, ActionRegistry, PermanentActionError, load_entry_point_registry
from integrations.settings import StanchSettings

EXAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "example-actions"


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Install the example the way an installer does: the package and a dist-info on sys.path."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    site = tmp_path / "site"
    shutil.copytree(EXAMPLE / "src" / "stanch_example_actions", site / "stanch_example_actions")
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    eps = "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items())
                  for group, entries in project["entry-points"].items())
    (info / "entry_points.txt").write_text(eps)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield site
    for name in [m for m in list(sys.modules) if m.startswith("stanch_example_actions")]:
        monkeypatch.delitem(sys.modules, name, raising=False)


def test_installed_package_adds_its_actions_and_a_runbook_validates(installed: Path, tmp_path: Path) -> None:
    dist = importlib.metadata.distribution("stanch-example-actions")
    assert [ep.name for ep in dist.entry_points if ep.group == "stanch.integrations"] == ["example"]
    registry = load_entry_point_registry()
    assert {"example.ticket.open", "example.ticket.close", "aws.iam.find_access_key"} <= set(registry.names())
    assert [d for d in validate_file(EXAMPLE / "runbook.yaml", registry=registry) if d.is_error] == []
    builtin_only = ActionRegistry()
    for spec in registry.specs():
        if not spec.name.startswith("example."):
            builtin_only.register(spec)
    assert "RB104" in {d.code for d in validate_file(EXAMPLE / "runbook.yaml", registry=builtin_only)}

    spec = registry.get("example.ticket.open")
    folder = tmp_path / "tickets"
    folder.mkdir()
    ctx = ActionContext(incident_id="INC-7", step_id="follow-up", settings=StanchSettings(home=tmp_path))
    params = {"folder": str(folder), "title": "Delete the old keys"}
    first = spec.execute(ctx, params)
    again = spec.execute(ctx, params)
    assert first.opened and not again.opened and first.ticket_id == again.ticket_id
    assert [p.note for p in spec.describe(ctx, spec.validate_params(params))] == ["already open"]  # type: ignore[misc]
    undo = registry.get(spec.compensation or "").execute(ctx, spec.compensation_params(  # type: ignore[misc]
        spec.validate_params(params), first))
    assert undo.closed and len(list(folder.glob("T-*.json"))) == 1
    with pytest.raises(PermanentActionError, match="does not exist"):
        spec.execute(ctx, {"folder": str(tmp_path / "nope"), "title": "x"})
