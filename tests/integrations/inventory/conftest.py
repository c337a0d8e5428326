"""Paths to the inventory fixtures (copies of the real-world files live in the repo)."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "inventory"
REAL = FIXTURES / "real-world"
FLEET = FIXTURES / "fleet" / "inventory.yaml"
# The shared research folder sits beside the clone; used only to check the copies are faithful.
SHARED_REAL = Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "real-world"


@pytest.fixture
def real() -> Path:
    return REAL


@pytest.fixture
def inv_fleet() -> Path:
    return FLEET


@pytest.fixture
def shared_real() -> Path:
    return SHARED_REAL
