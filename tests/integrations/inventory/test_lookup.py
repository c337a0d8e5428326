"""inventory.lookup_services: named services' entries, audience details resolved; unknown names and
a missing inventory are permanent errors naming the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from integrations.base import ActionContext
from integrations.errors import PermanentActionError
from integrations.inventory.lookup import LOOKUP_SERVICES
from integrations.settings import StanchSettings


def _ctx(tmp_path: Path) -> ActionContext:
    return ActionContext(incident_id="INC-1", step_id="lookup", settings=StanchSettings(home=tmp_path))


def test_lookup_named_services(inv_fleet: Path, tmp_path: Path) -> None:
    out = LOOKUP_SERVICES.execute(_ctx(tmp_path), {"services": ["lint-bot", "lint-bot"], "inventory": str(inv_fleet)})
    assert [s.name for s in out.services] == ["lint-bot"] and out.services[0].account == "101010101010"
    assert LOOKUP_SERVICES.mutating is False
    (dash,) = LOOKUP_SERVICES.execute(_ctx(tmp_path), {"services": ["stx-defi-dashboard"],
                                                       "inventory": str(inv_fleet)}).services
    assert dash.audience == "dashboard-users" and dash.audience_detail and dash.audience_detail["sender"]


def test_unknown_service_and_missing_inventory(inv_fleet: Path, tmp_path: Path) -> None:
    with pytest.raises(PermanentActionError, match="no service 'nope'"):
        LOOKUP_SERVICES.execute(_ctx(tmp_path), {"services": ["nope"], "inventory": str(inv_fleet)})
    with pytest.raises(PermanentActionError, match="no inventory"):
        LOOKUP_SERVICES.execute(_ctx(tmp_path), {"services": ["x"]})
