"""Errors about inventory, lockfile, install-history and advisory files name the file and the
problem, never the file's content (a password in a stray YAML file, /etc/hostname): those
messages end up in step reports and the Slack thread."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from integrations.errors import StanchError
from integrations.inventory.match import read_install_history
from integrations.inventory.model import load_inventory
from integrations.inventory.osv import load_advisory
from integrations.inventory.readers import read_source

SECRET = "hunter2-wJalrXUtnFEMI-K7MDENG"


@pytest.mark.parametrize("name,text,expect", [
    ("secrets.yaml", f"db:\n  password: {SECRET}\naws_secret_access_key: {SECRET}\n", "unknown field"),
    ("hostname", f"{SECRET}\n", "expected a mapping"),
    ("list.yaml", f"- {SECRET}\n", "expected a mapping"),
    ("bad-account.yaml", f"services:\n  - name: a\n    account: '{SECRET}'\n", "services.0.account"),
    ("broken.yaml", f"services: [a\n  b: {SECRET}\n", "not valid YAML (line"),
    (f"{'x' * 3}.yaml", f"services:\n  - {{name: a, account: '111122223333', {SECRET}: 1}}\n", "unknown field"),
])
def test_inventory_errors(tmp_path: Path, name: str, text: str, expect: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(StanchError) as err:
        load_inventory(path)
    assert expect in str(err.value) and str(path) in str(err.value)
    assert SECRET not in str(err.value)


def test_lockfile_install_history_and_advisory_errors(tmp_path: Path) -> None:
    lock = tmp_path / "pnpm-lock.yaml"
    lock.write_text(f"lockfileVersion: '9.0'\npackages: [{SECRET}\n")
    history = tmp_path / "installs.json"
    history.write_text(json.dumps([{"at": SECRET, "token": SECRET}]))
    advisory = tmp_path / "adv.json"
    advisory.write_text(json.dumps({"id": 5, "modified": SECRET, "affected": SECRET}))
    for call in (lambda: read_source(lock), lambda: read_install_history(history), lambda: load_advisory(advisory)):
        with pytest.raises(StanchError) as err:
            call()
        assert SECRET not in str(err.value), str(err.value)
