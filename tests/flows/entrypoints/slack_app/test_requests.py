"""Request handling without the engine: signatures, replay window, Slack retries, authorization,
help and validation errors. The launcher only records, so "starts nothing" is exact."""

from __future__ import annotations

import json
import time

from slack_harness import SlackHarness, sign

from flows.entrypoints.slack.commands import SeenSet, dedupe_key, parse_command
from flows.entrypoints.slack.launchers import RecordingLauncher

RUN = "run compromised-dependency advisory=MAL-2026-2307 app_version=4.2.1"


def _launched(h: SlackHarness) -> int:
    assert isinstance(h.launcher, RecordingLauncher)
    return len(h.launcher.requests)


def _ack(resp: object) -> dict[str, object]:
    data = resp.data  # type: ignore[attr-defined]
    return json.loads(data) if data else {}


def test_allowed_user_starts_exactly_one_run(offline: SlackHarness) -> None:
    resp, url = offline.command(RUN, "U0ONCALL")
    assert resp.status == 200
    assert _ack(resp)["response_type"] == "ephemeral"
    out = offline.wait_response(url)[0]
    assert out["response_type"] == "in_channel", out
    assert "incident `INC-" in out["text"] and "<@U0ONCALL>" in out["text"]
    assert _launched(offline) == 1
    req = offline.launcher.requests[0]  # type: ignore[attr-defined]
    assert req.initiator == "slack:U0ONCALL"
    assert req.inputs == {"advisory": "MAL-2026-2307", "app_version": "4.2.1"}


def test_group_member_is_allowed_and_outsider_is_refused(offline: SlackHarness) -> None:
    resp, url = offline.command(RUN, "U0LEAD2")  # via @security-leads
    assert resp.status == 200
    assert offline.wait_response(url)[0]["response_type"] == "in_channel"
    assert offline.standin.calls("usergroups.users.list")
    resp, url = offline.command(RUN, "U0OUTSIDER")
    assert resp.status == 200
    out = offline.wait_response(url)[0]
    assert out["response_type"] == "ephemeral"
    assert "not allowed to start `compromised-dependency`" in out["text"]
    time.sleep(0.2)
    assert _launched(offline) == 1
    assert offline.incidents() == []


def test_bad_signature_is_401_and_starts_nothing(offline: SlackHarness) -> None:
    body = offline.command_body(RUN)
    assert offline.post(body, sign(body, secret="not-the-secret")).status == 401
    headers = sign(body)
    assert offline.post(body + "&x=1", headers).status == 401  # body changed after signing
    assert offline.post(body, {"Content-Type": "application/x-www-form-urlencoded"}).status == 401  # unsigned
    time.sleep(0.3)
    assert _launched(offline) == 0 and offline.incidents() == []
    assert offline.standin.responses() == []


def test_stale_timestamp_is_401_and_starts_nothing(offline: SlackHarness) -> None:
    body = offline.command_body(RUN)
    assert offline.post(body, sign(body, ts=int(time.time()) - 301)).status == 401
    assert offline.post(body, sign(body, ts=int(time.time()) + 301)).status == 401
    time.sleep(0.3)
    assert _launched(offline) == 0 and offline.standin.responses() == []


def test_slack_retry_of_the_same_delivery_starts_nothing(offline: SlackHarness) -> None:
    url = offline.standin.response_url()
    body = offline.command_body(RUN, response_url=url, trigger_id="1234.abcd")
    assert offline.post(body, sign(body)).status == 200
    offline.wait_response(url)
    for n in ("1", "2"):  # Slack re-signs each retry with a fresh timestamp
        retry = offline.post(body, {**sign(body), "X-Slack-Retry-Num": n, "X-Slack-Retry-Reason": "http_timeout"})
        assert retry.status == 200
    time.sleep(0.3)
    assert _launched(offline) == 1
    assert len(offline.standin.responses(url)) == 1
    # a deliberate second invocation (new trigger_id) is a new run
    _resp, url2 = offline.command(RUN)
    offline.wait_response(url2)
    assert _launched(offline) == 2


def test_help_and_unknown_commands_reply_ephemerally(offline: SlackHarness) -> None:
    for text in ("help", "", "  "):
        resp, _ = offline.command(text)
        ack = _ack(resp)
        assert resp.status == 200 and ack["response_type"] == "ephemeral"
        assert "/stanch run RUNBOOK" in str(ack["text"])
    resp, _ = offline.command("launch the missiles")
    ack = _ack(resp)
    assert ack["response_type"] == "ephemeral" and "unknown command 'launch'" in str(ack["text"])
    resp, _ = offline.command("run ../../etc/passwd")
    assert "paths are not accepted" in str(_ack(resp)["text"])
    assert _launched(offline) == 0


def test_input_errors_reply_ephemerally_like_the_cli(offline: SlackHarness) -> None:
    resp, url = offline.command("run compromised-dependency bogus=1 app_version")
    assert resp.status == 200
    out = offline.wait_response(url)[0]
    assert out["response_type"] == "ephemeral"
    assert "error: inputs are key=value; could not read: 'app_version'" in out["text"]
    resp, url = offline.command("run compromised-dependency bogus=1")
    out = offline.wait_response(url)[0]
    assert "unknown input 'bogus'" in out["text"] and "advisory" in out["text"]
    resp, url = offline.command("run no-such-runbook")
    assert "no runbook named 'no-such-runbook'" in offline.wait_response(url)[0]["text"]
    assert _launched(offline) == 0


def test_runbook_diagnostics_are_the_cli_text(offline: SlackHarness) -> None:
    from flows.engine.spec import validate_file
    from integrations.base import default_registry

    _resp, url = offline.command("run broken")
    out = offline.wait_response(url)[0]
    assert out["response_type"] == "ephemeral"
    rb = next(p for p in (offline.store.parent.parent / "rb").glob("broken.yaml"))
    for d in validate_file(rb, default_registry()):
        assert d.format().splitlines()[0] in out["text"].replace("&gt;", ">").replace("&lt;", "<")
    assert "error[RB104]" in out["text"]
    assert _launched(offline) == 0


def test_user_not_on_the_runbooks_list_is_refused(offline: SlackHarness) -> None:
    _resp, url = offline.command("run gated", "U0LEAD1")
    out = offline.wait_response(url)[0]
    assert "not allowed to start `gated`" in out["text"]
    assert _launched(offline) == 0


def test_list_and_status_with_no_incidents(offline: SlackHarness) -> None:
    resp, _ = offline.command("list")
    assert _ack(resp) == {"response_type": "ephemeral", "text": "No open incidents."}
    resp, _ = offline.command("status")
    assert _ack(resp)["text"] == "No incidents yet."
    resp, _ = offline.command("status INC-NOPE")
    text = str(_ack(resp)["text"])
    # store-neutral: never the server's folders (nor a database's address) in a reply to Slack
    assert text == ":warning: no incident 'INC-NOPE' in the incident store", text
    assert str(offline.store) not in text and "/" not in text


def test_click_on_unknown_incident_is_explained(offline: SlackHarness) -> None:
    resp, url = offline.click("INC-NOPE", "approve-rotation", "U0LEAD1")
    assert resp.status == 200
    out = offline.wait_response(url)[0]
    assert out["response_type"] == "ephemeral" and "no incident 'INC-NOPE'" in out["text"]
    assert str(offline.store) not in out["text"] and "looked in" not in out["text"]


def test_parse_and_dedupe_units(tmp_path: object) -> None:
    assert parse_command("run x a=“two words”").args == ("x", "a=two words")
    body = {"team_id": "T", "channel_id": "C", "user_id": "U", "text": "run x", "trigger_id": "1"}
    assert dedupe_key(body) == dedupe_key(dict(body)) != dedupe_key({**body, "trigger_id": "2"})
    from pathlib import Path

    seen = SeenSet(Path(str(tmp_path)) / "seen.txt")
    assert seen.claim("k") and not seen.claim("k")
    assert not SeenSet(Path(str(tmp_path)) / "seen.txt").claim("k")  # survives a restart


def test_command_splitting_is_shell_like_linear_and_bounded() -> None:
    import shlex

    import pytest

    from flows.entrypoints.slack.commands import MAX_COMMAND_CHARS, split_words
    from integrations.errors import InputError

    for text in ['run x a=1 b="two words"', "a='q \" x' c=d\\ e", 'a "b\\"c" d', 'a ""  b', "x\\\\y",
                 "a 'b\\c'", 'a"b c"d', "'' x", '  lead  trail  ', 'a "b\\\\" c', '"\\\\\\"" z']:
        assert split_words(text) == shlex.split(text), text
    for text in ('a "b', "a 'b", 'a "b\\"', "a\\"):
        with pytest.raises(InputError, match="could not read the command"):
            split_words(text)
    for word in ("b" * 1_000_000, '"' + "b c" * 300_000 + '"'):  # shlex: ~50 s for 1 MB
        started = time.perf_counter()
        assert len(split_words("run x a=" + word)) == 3
        assert time.perf_counter() - started < 2.0
    started = time.perf_counter()
    with pytest.raises(InputError, match=f"at most {MAX_COMMAND_CHARS}"):
        parse_command("run x a=" + "b" * 10_000_000)
    assert time.perf_counter() - started < 0.5


def test_list_and_status_read_the_postgres_store_not_the_local_folder(pg_store: str, offline: SlackHarness,
                                                                      tmp_path: object) -> None:
    """B3: on a replica that did not write the incident (its own, empty working copy), `/stanch
    list` said "No open incidents." and `status` "No incidents yet."."""
    from datetime import UTC, datetime
    from pathlib import Path

    from flows.engine.incident import Incident

    other = Path(str(tmp_path)) / "replica-a"  # the writer's machine
    for iid, day, finished in (("INC-PG-DONE", 1, True), ("INC-PG-WAIT", 2, False), ("INC-PG-OLD", 3, False)):
        inc = Incident(other, iid)
        inc.timeline.append("run.started", data={"runbook": "compromised-dependency", "drill": True},
                            ts=datetime(2026, 5, day, tzinfo=UTC), actor="slack:U0ONCALL")
        if finished:
            inc.timeline.append("run.finished", data={"outcome": "succeeded"})
        inc.timeline.close()
    waiting = Incident(other, "INC-PG-WAIT")  # the most recently active: it now waits for a person
    waiting.timeline.append("approval.requested", step="approve-rotation", data={"approvers": ["U0LEAD1"]})
    waiting.timeline.close()
    assert not offline.store.exists() or not any(offline.store.iterdir())  # nothing local on this replica

    resp, _ = offline.command("list")
    text = str(_ack(resp)["text"])
    assert text.startswith("*Open incidents* (2)") and "INC-PG-DONE" not in text, text
    assert text.index("INC-PG-WAIT") < text.index("INC-PG-OLD"), text  # most recently active first
    assert "waiting for approval of `approve-rotation`" in text and "DRILL" in text
    resp, _ = offline.command("status")
    text = str(_ack(resp)["text"])
    assert text.startswith("*INC-PG-WAIT* · `compromised-dependency` · DRILL · waiting for approval"), text
    resp, _ = offline.command("status INC-PG-DONE")
    assert "*INC-PG-DONE*" in str(_ack(resp)["text"]) and "contained" in str(_ack(resp)["text"])


def test_list_and_status_with_the_store_unreachable_answer_one_line_without_its_address(
        offline: SlackHarness, monkeypatch: object) -> None:
    """The PostgreSQL store down: `/stanch list` and `status` answer one line (was an unhandled
    error in the handler), and Slack is not told the database's address."""
    import socket

    import pytest

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setenv("STANCH_STORE", f"postgresql://postgres:pw-not-for-slack@127.0.0.1:{port}/nowhere")
    for command in ("list", "status", "status INC-ANY"):
        resp, _ = offline.command(command)
        text = str(_ack(resp)["text"])
        assert text.startswith(":warning: the incident store cannot be reached"), (command, text)
        assert str(port) not in text and "pw-not-for-slack" not in text and "nowhere" not in text
