"""The key that signs timelines by default: the installation key is created on first use (0600 in a
0700 folder), concurrent first uses agree on one key, verifying never creates one, and a key inside
the incident store is refused (whoever rewrites the record could re-sign it)."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import pytest

from flows.engine.timeline_keys import (
    installation_key_path,
    key_id,
    load_public,
    own_public_key,
    public_line,
    public_text,
    signing_key,
    trusted_keys,
)
from integrations.errors import ConfigurationError
from integrations.settings import StanchSettings


def _first_use(home: str) -> str:
    return key_id(signing_key(StanchSettings(home=Path(home))).public_key())


def test_the_installation_key_is_made_once_private_and_agreed_on(tmp_path: Path) -> None:
    settings = StanchSettings(home=tmp_path / "home")
    assert own_public_key(settings) is None and trusted_keys(settings) == {}  # verify never creates a key
    assert not installation_key_path(settings).exists()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:  # four processes' first use at once
        kids = set(pool.map(_first_use, [str(tmp_path / "home")] * 4))
    path = installation_key_path(settings)
    assert len(kids) == 1 and path == (tmp_path / "home" / "keys" / "timeline-ed25519.pem").resolve()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    assert set(trusted_keys(settings)) == kids
    public = own_public_key(settings)
    assert public is not None
    # both public forms a verifier is handed load back as the same key
    assert [key_id(k) for k in load_public(public_line(public))] == list(kids)
    assert [key_id(k) for k in load_public(public_text(public))] == list(kids)


def test_a_key_inside_the_store_is_refused_and_an_unwritable_home_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="inside the incident store"):
        signing_key(StanchSettings(home=tmp_path, store=tmp_path))  # type: ignore[arg-type]
    (tmp_path / "a-file").write_text("")  # a home that cannot hold a keys/ folder
    with pytest.raises(ConfigurationError, match=r"cannot create the timeline signing key .*STANCH_TIMELINE_KEY"):
        signing_key(StanchSettings(home=tmp_path / "a-file" / "home"))
    (tmp_path / "bad" / "keys").mkdir(parents=True)
    (tmp_path / "bad" / "keys" / "timeline-ed25519.pem").write_text("not a key")
    with pytest.raises(ConfigurationError, match="unreadable"):
        signing_key(StanchSettings(home=tmp_path / "bad"))


def test_timeline_key_prints_the_line_a_verifier_elsewhere_needs(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flows.engine.checkpoints import Signer, verify_record
    from flows.engine.timeline import Timeline
    from flows.entrypoints.cli import app

    writer = {"STANCH_HOME": str(tmp_path / "writer"), "STANCH_STORE": str(tmp_path / "store")}
    printed = CliRunner().invoke(app, ["timeline", "key"], env=writer)
    assert printed.exit_code == 0 and printed.output.startswith("ssh-ed25519 "), printed.output
    tl = Timeline(tmp_path / "store" / "INC-K")
    tl.append("run.started", data={})
    Signer.from_settings(StanchSettings(home=tmp_path / "writer"), "INC-K", tl).checkpoint(
        "end", lambda kind, data: tl.append(kind, data=data))
    tl.close()
    elsewhere = {"STANCH_HOME": str(tmp_path / "auditor"), "COLUMNS": "300"}
    refused = CliRunner().invoke(app, ["timeline", "verify", str(tmp_path / "store" / "INC-K")], env=elsewhere)
    assert refused.exit_code == 1 and "not trusted here" in refused.output
    trusted = CliRunner().invoke(app, ["timeline", "verify", str(tmp_path / "store" / "INC-K")],
                                 env={**elsewhere, "STANCH_TIMELINE_PUBKEYS": printed.output.strip()})
    assert trusted.exit_code == 0 and "head signed" in trusted.output, trusted.output
    assert verify_record(tmp_path / "store" / "INC-K" / "timeline.jsonl", trusted_keys(
        StanchSettings(home=tmp_path / "auditor", timeline_pubkeys=printed.output.strip()))).signed
