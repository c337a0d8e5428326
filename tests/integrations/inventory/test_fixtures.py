"""The copied fixtures and bundled advisories are faithful to their sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from integrations.inventory.osv import BUNDLED_DIR, iter_advisory_files, load_advisory


def test_copies_match_shared_when_present(real: Path, shared_real: Path) -> None:
    if not shared_real.is_dir():
        pytest.skip("../shared not beside the clone")
    copies = [p for p in real.rglob("*") if p.is_file() and p.name != "README.md"]
    assert copies
    for p in copies:
        original = shared_real / p.relative_to(real)
        assert original.read_bytes() == p.read_bytes(), p


def test_every_bundled_and_copied_record_validates(real: Path) -> None:
    files = list(iter_advisory_files(BUNDLED_DIR)) + list(iter_advisory_files(real / "osv"))
    assert len(files) == 12
    for f in files:
        load_advisory(f)  # raises InputError if the OSV schema rejects it


def test_invalid_record_is_rejected(tmp_path: Path) -> None:
    from integrations.errors import InputError

    bad = tmp_path / "OSS-SIRT-1.json"
    bad.write_text('{"id": "x", "modified": "not a date", "affected": "nope"}')
    with pytest.raises(InputError, match="not a valid OSV record"):
        load_advisory(bad)
