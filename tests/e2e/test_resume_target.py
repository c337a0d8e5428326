"""A `--sandbox` run resumed (or rolled back) in an environment that no longer names the sandbox
targets exactly the sandbox it ran against — never the default AWS endpoint — and is refused when
that sandbox is down.

"Real AWS" is played by a TCP listener on loopback that the environment's ``AWS_ENDPOINT_URL``
points at (boto3 uses it when stanch gives no endpoint): the test asserts nothing connected to it."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from killpoints import ENV_FLAG, KillPoint, events, run_until_killed, stanch, stanch_env

from integrations.aws.session import clear_client_cache
from integrations.sandbox import Sandbox, observe
from integrations.sandbox.fleet import CA_SECRET

HERE = Path(__file__).parent
ACCOUNT = "222222222222"


class Trap:
    """Counts connections to a loopback port (and closes them at once)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.hits = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.hits += 1
            conn.close()


@pytest.fixture
def trap() -> Iterator[Trap]:
    t = Trap()
    yield t
    t.sock.close()


@pytest.mark.timeout(900)
def test_sandbox_run_resumes_against_its_sandbox_and_refuses_when_it_is_down(
        prefect_server: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trap: Trap) -> None:
    monkeypatch.setenv(ENV_FLAG, "1")
    home = tmp_path / "home"
    clear_client_cache()
    # no STANCH_* endpoint anywhere: only `--sandbox` (sandbox.json in STANCH_HOME) names the sandbox
    env = stanch_env(home, STANCH_AWS_ENDPOINT_URL=None, STANCH_SLACK_BASE_URL=None, STANCH_SLACK_TOKEN=None,
                     STANCH_INVENTORY=None, AWS_ENDPOINT_URL=trap.url, AWS_ACCESS_KEY_ID="real-looking",
                     AWS_SECRET_ACCESS_KEY="real-looking")
    inc = "INC-TARGET"
    folder = home / "incidents" / inc
    with Sandbox(home, write_state=True) as sb:
        assert sb.fleet is not None
        desk = sb.fleet.services["desktop-app"]
        inputs = {"account": ACCOUNT, "users": json.dumps([desk.ci_user]), "certificate_arn": desk.certificate_arn,
                  "secret_name": desk.signing_secret, "ca_secret_name": CA_SECRET, "bucket": desk.release_bucket}
        args = [a for k, v in inputs.items() for a in ("-i", f"{k}={v}")]
        run_until_killed(["run", str(HERE / "killpoints.yaml"), "--sandbox", "--incident-id", inc, *args],
                         env, sb.url, KillPoint("ImportCertificate", "after"))
        meta = json.loads((folder / "incident.json").read_text())
        assert meta["target"] == {"aws_endpoint_url": sb.url, "slack_base_url": None, "sandbox": True,
                                  "drill": False, "region": "us-east-1",
                                  "assume_role_name": "StanchIncidentResponder"}

        done = stanch(["resume", inc], env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"the sandbox at {sb.url}" in done.stderr
        assert set(observe.access_key_statuses(sb.url, ACCOUNT, desk.ci_user).values()) == {"Inactive"}
        assert observe.release_manifest(sb.url, ACCOUNT, desk.release_bucket or "")["incident"] == inc
        resumed = events(folder, "run.resumed")
        assert resumed[-1]["data"]["target"]["aws_endpoint_url"] == sb.url
    assert trap.hits == 0  # nothing went to the "default AWS endpoint"

    # the sandbox is down now: rollback refuses instead of going anywhere else
    refused = stanch(["rollback", inc], env)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "does not answer" in refused.stderr and "never real AWS" in refused.stderr
    assert not events(folder, "rollback.started")
    assert trap.hits == 0
