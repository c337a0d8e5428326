"""Secrets end to end (issue 8): a canary secret input reaches the actions that use it and none
of the incident folder, Prefect's database (flow-run parameters, the SQLite file), Prefect's logs,
artifacts or the Slack stand-in; a secret's *name* (``ca_secret``) survives into a resume."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterTags,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, PREFECT_HOME
from typer.testing import CliRunner

from flows.entrypoints.cli import app
from flows.entrypoints.demo import DEMO_INPUTS
from integrations.aws import certs
from integrations.aws.session import clients_for
from integrations.sandbox import Sandbox, observe
from integrations.settings import StanchSettings

HERE = Path(__file__).parent
RUNBOOK = HERE.parents[1] / "runbooks" / "compromised-dependency.yaml"
CANARY = "cnry-5b1d0e7a93f4-do-not-leak"


def _flow_run(incident: str) -> Any:
    """The incident's one flow run, by its incident tag (names are for people)."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[f"incident:{incident}"])))
    assert len(runs) == 1, runs
    return runs[0]


def _prefect_logs(flow_run_id: Any, expect: str) -> list[str]:
    """The run's logs as Prefect stored them (sent in batches: poll until ``expect`` arrives)."""
    deadline = time.monotonic() + 30
    while True:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        messages = [log.message for log in logs]
        if any(expect in m for m in messages) or time.monotonic() > deadline:
            return messages
        time.sleep(0.5)


def _sqlite_files() -> list[Path]:
    url = str(PREFECT_API_DATABASE_CONNECTION_URL.value() or "")
    files = []
    if url.startswith("sqlite"):
        db = Path(url.split("///", 1)[1])
        files += [p for p in db.parent.glob(db.name + "*") if p.is_file()]
    home = Path(str(PREFECT_HOME.value()))
    files += [p for p in home.rglob("*") if p.is_file()] if home.exists() else []
    return files


def test_a_canary_secret_input_reaches_its_actions_and_no_output(sandbox: Sandbox, tmp_path: Path) -> None:
    settings = StanchSettings(aws_endpoint_url=sandbox.url)
    sm = clients_for(settings, "111111111111", "us-east-1")("secretsmanager")
    sm.create_secret(Name="vendor/api-token", SecretString="the-old-token-value")

    result = CliRunner().invoke(app, ["run", str(HERE / "canary.yaml"), "-i", f"api_token={CANARY}",
                                      "--incident-id", "INC-CANARY"])
    assert result.exit_code == 0, result.output
    assert CANARY not in result.output

    # the actions got the real value: the secret in moto now holds it (redaction is not on values)
    assert observe.secret_value(sandbox.url, "111111111111", "vendor/api-token")["value"] == CANARY

    # the incident folder: every file
    folder = Path(StanchSettings().store_dir) / "INC-CANARY"
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert {"incident.json", "plan.json", "timeline.jsonl", "postmortem.md"} <= {p.name for p in files}
    for p in files:
        assert CANARY.encode() not in p.read_bytes(), p
    meta = json.loads((folder / "incident.json").read_text())
    assert meta["inputs"]["api_token"] == {"$secret_ref": "api_token"}
    assert meta["inputs"]["token_secret"] == "vendor/api-token"  # a secret's name is kept verbatim

    # Prefect: flow-run parameters, task runs, logs, artifacts, and the database file itself
    run = _flow_run("INC-CANARY")
    assert run.parameters["inputs"]["api_token"] == {"$secret_ref": "api_token"}
    assert CANARY not in json.dumps(run.parameters)
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [run.id]}))
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
    assert task_runs and all(CANARY not in tr.model_dump_json() for tr in task_runs)
    assert len(artifacts) >= 4 and all(CANARY not in a.model_dump_json() for a in artifacts)
    logs = _prefect_logs(run.id, "vendor rejected [redacted]")
    assert any("vendor rejected [redacted]" in m for m in logs), logs  # the failed step's error is logged, masked
    assert not [m for m in logs if CANARY in m]
    db_files = _sqlite_files()
    assert db_files
    for p in db_files:
        assert CANARY.encode() not in p.read_bytes(), p

    # Slack: the message that mentions the token was posted, masked
    calls = sandbox.slack.calls()  # type: ignore[union-attr]
    assert CANARY not in json.dumps(calls, default=str)
    posted = json.dumps([c["params"] for c in sandbox.slack.calls("chat.postMessage")])  # type: ignore[union-attr]
    assert "Rotating the vendor token [redacted] stored in vendor/api-token" in posted


def test_resume_reads_the_ca_from_the_secret_the_incident_names(sandbox: Sandbox, tmp_path: Path) -> None:
    assert sandbox.state is not None and sandbox.fleet is not None
    desktop = sandbox.fleet.services["desktop-app"]
    assert desktop.certificate_arn and desktop.signing_secret
    args = ["run", str(RUNBOOK), "--drill", "--incident-id", "INC-CA",
            "-i", f"inventory={sandbox.state.inventory_path}", "-i", "ca_secret=pki/incident-ca",
            *[x for k, v in DEMO_INPUTS.items() if k != "ca_secret" for x in ("-i", f"{k}={v}")]]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 1, first.output  # the CA secret does not exist yet: rotation fails
    folder = Path(StanchSettings().store_dir) / "INC-CA"
    assert json.loads((folder / "incident.json").read_text())["inputs"]["ca_secret"] == "pki/incident-ca"
    started = next(json.loads(x) for x in (folder / "timeline.jsonl").open() if '"run.started"' in x)
    assert started["data"]["inputs"]["ca_secret"] == "pki/incident-ca"

    ca = certs.make_ca("Incident 2026 code-signing CA")
    sm = clients_for(StanchSettings(aws_endpoint_url=sandbox.url), desktop.account, "us-east-1")("secretsmanager")
    sm.create_secret(Name="pki/incident-ca", SecretString=ca.to_secret_string())

    second = CliRunner().invoke(app, ["resume", "INC-CA"])
    assert second.exit_code == 0, second.output
    facts = observe.certificate_facts(sandbox.url, desktop.account, desktop.certificate_arn)
    assert facts["issuer"] == ca.certificate.subject.rfc4514_string()  # issued by the CA the incident names
    key = certs.load_key(observe.secret_value(sandbox.url, desktop.account, desktop.signing_secret)["value"])
    assert certs.public_key_der(key) == facts["public_key_der"]
