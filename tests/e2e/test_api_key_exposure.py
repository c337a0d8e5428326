"""runbooks/api-key-exposure.yaml end to end on the ``tenants`` sandbox fleet: five of six tenants'
API keys rotated in Secrets Manager through batched fan-out, and each of those tenants e-mailed and
SNS-notified exactly once with its own details only — read back from moto's SES and SNS backends."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from postmortem_golden import check_postmortem_golden
from sandboxes import seeded_sandbox
from typer.testing import CliRunner

from flows.engine.runtime import run_runbook
from flows.entrypoints.cli import app
from integrations.sandbox import Sandbox, observe
from integrations.sandbox.fleet_library import TENANT_SENDER

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "api-key-exposure.yaml"
GOLDEN = Path(__file__).parent / "golden" / "plan_api_key_exposure.txt"
WEB = "111111111111"
AFFECTED = ["acme", "globex", "hooli", "initech", "stark"]  # umbrella is not affected


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Iterator[Sandbox]:
    with pytest.MonkeyPatch.context() as mp:
        yield from seeded_sandbox(tmp_path_factory.mktemp("tenants"), mp, fleet_variant="tenants")


def _inputs() -> dict[str, object]:
    return {"account": WEB, "tenants": AFFECTED, "sender": TENANT_SENDER}


def _plan_golden_and_side_effect_free(tenants: Sandbox) -> None:
    """`stanch plan` against the seeded fleet equals the golden file and changes nothing (one
    sandbox per module: run first, inside the end-to-end test, so xdist never splits them)."""
    args = ["plan", "api-key-exposure", "--input", f"account={WEB}", "--input", f"tenants={','.join(AFFECTED)}",
            "--input", f"sender={TENANT_SENDER}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    got = re.sub(r"(secret:[\w/+=.@-]+?)-[A-Za-z0-9]{6}\b", r"\1-<suffix>", result.output)
    if os.environ.get("STANCH_UPDATE_GOLDEN"):
        GOLDEN.write_text(got)
    assert got == GOLDEN.read_text()
    assert observe.sent_emails(tenants.url) == []


def test_each_affected_tenant_rotated_and_told_once_with_its_own_details(tenants: Sandbox, tmp_path: Path) -> None:
    _plan_golden_and_side_effect_free(tenants)
    fleet = tenants.fleet
    assert fleet is not None and sorted(fleet.tenants) == sorted([*AFFECTED, "umbrella"])
    before = {t: observe.secret_value(tenants.url, WEB, x.secret_name, "us-east-1") for t, x in fleet.tenants.items()}

    state = run_runbook(str(RUNBOOK), _inputs(), "INC-API-1", str(tmp_path / "store"), True, "test",
                        return_state=True)
    assert state.is_completed(), state.message  # type: ignore[attr-defined]
    folder = tmp_path / "store" / "INC-API-1"
    summary = check_postmortem_golden(folder, "postmortem_summary_api_key_exposure.md")
    assert "What was changed:" in summary and "nothing: no step" not in summary

    everything = "".join(p.read_text() for p in folder.rglob("*") if p.is_file())
    emails = observe.sent_emails(tenants.url)
    for t, x in fleet.tenants.items():
        after = observe.secret_value(tenants.url, WEB, x.secret_name)
        own_mail = [m for m in emails if x.contact in m.to]
        own_sns = observe.sns_notifications(WEB, x.topic_arn)
        if t not in AFFECTED:
            assert after["version_id"] == before[t]["version_id"] and not own_mail and not own_sns, t
            continue
        assert after["version_id"] != before[t]["version_id"] and after["value"] != before[t]["value"], t
        assert after["value"] not in everything and before[t]["value"] not in everything, t
        assert len(own_mail) == 1 and own_mail[0].to == [x.contact], t
        assert len(own_sns) == 1, t
        for text in (f"{own_mail[0].subject}\n{own_mail[0].body}", f"{own_sns[0]['subject']}\n{own_sns[0]['message']}"):
            assert t in text and x.secret_name in text and after["version_id"] in text, (t, text)
            assert after["value"] not in text
            others = [o for o in fleet.tenants if o != t and o in text]
            assert others == [], (t, others)
    assert len(emails) == len(AFFECTED)
    # the when: always summary reached the incident channel with the run's outcome
    (summary,) = [m["text"] for m in tenants.slack.messages("C0INCIDENT")  # type: ignore[union-attr]
                  if m["text"].startswith("[DRILL] INC-API-1: API-key rotation ")]
    assert summary == ("[DRILL] INC-API-1: API-key rotation succeeded. Rotated 5 tenant API key(s); "
                       "e-mailed 5 tenant(s), SNS notices to 5."), summary

    # `stanch resume` of the finished incident: nothing rotated twice, nobody told twice
    versions = {t: observe.secret_value(tenants.url, WEB, fleet.tenants[t].secret_name)["version_id"] for t in AFFECTED}
    try:
        run_runbook(str(RUNBOOK), _inputs(), "INC-API-1", str(tmp_path / "store"), True, "test", resume=True,
                    return_state=True)
    except Exception as exc:  # a finished incident may be refused: then nothing ran either
        assert "finished" in str(exc) or "already" in str(exc), exc
    assert {t: observe.secret_value(tenants.url, WEB, fleet.tenants[t].secret_name)["version_id"]
            for t in AFFECTED} == versions
    assert len(observe.sent_emails(tenants.url)) == len(AFFECTED)
    for t in AFFECTED:
        assert len(observe.sns_notifications(WEB, fleet.tenants[t].topic_arn)) == 1
