"""SlackClient against the stand-in over real HTTP: posting, threads, edits, retries, error mapping."""

from __future__ import annotations

import itertools
import json
import time
import urllib.request

import pytest
from pydantic import SecretStr

from integrations.errors import ConfigurationError, DrillSafetyError, PermanentActionError
from integrations.sandbox.slack_standin import SlackStandIn
from integrations.settings import StanchSettings
from integrations.slack import IncidentThread, SlackUnavailable
from integrations.slack.client import SlackClient


def test_post_thread_and_update_are_recorded(standin: SlackStandIn, client: SlackClient) -> None:
    assert client.auth_test()["user_id"] == "U0STANCHBOT"
    channel, ts = client.post(
        "#incident", "header", [{"type": "section", "text": {"type": "mrkdwn", "text": "h"}}]
    )
    assert channel == "C0INCIDENT"
    _, reply_ts = client.post(channel, "step 1 done", thread_ts=ts)
    client.update(channel, ts, "header v2", [{"type": "section", "text": {"type": "mrkdwn", "text": "h2"}}])

    posts = standin.calls("chat.postMessage")
    assert [c["params"]["text"] for c in posts] == ["header", "step 1 done"]
    assert posts[1]["params"]["thread_ts"] == ts
    update = standin.calls("chat.update")[0]
    assert update["params"]["ts"] == ts and update["params"]["text"] == "header v2"
    assert all(c["token_ok"] and c["status"] == 200 for c in standin.calls())

    top, reply = standin.messages("C0INCIDENT")[-2:]
    assert top["ts"] == ts and top["text"] == "header v2" and "edited" in top
    assert reply["ts"] == reply_ts and reply["thread_ts"] == ts


def test_rate_limited_twice_then_success_honours_retry_after(
    standin: SlackStandIn, client: SlackClient
) -> None:
    standin.inject_fault("chat.postMessage", count=2, retry_after=1)
    started = time.monotonic()
    _, ts = client.post("#incident", "after throttling")
    elapsed = time.monotonic() - started
    assert ts
    calls = standin.calls("chat.postMessage")
    assert [c["status"] for c in calls] == [429, 429, 200]
    gaps = [b["time"] - a["time"] for a, b in itertools.pairwise(calls)]
    assert all(gap >= 1.0 for gap in gaps), gaps
    assert 2.0 <= elapsed < 4.0


def test_rate_limit_that_outlasts_retries_is_slack_unavailable(
    standin: SlackStandIn, client: SlackClient
) -> None:
    standin.inject_fault("chat.postMessage", count=10, retry_after=0)
    with pytest.raises(SlackUnavailable) as info:
        client.post("#incident", "x")
    assert info.value.transient and info.value.retry_after == 0
    assert len(standin.calls("chat.postMessage")) == 4  # 1 + 3 retries, bounded


def test_retry_after_beyond_cap_is_not_slept(standin: SlackStandIn, slack_settings: StanchSettings) -> None:
    client = SlackClient.from_settings(slack_settings, max_retry_after=5)
    standin.inject_fault("chat.postMessage", count=1, retry_after=120)
    started = time.monotonic()
    with pytest.raises(SlackUnavailable) as info:
        client.post("#incident", "x")
    assert time.monotonic() - started < 1.0
    assert info.value.retry_after == 120


def test_outage_is_slack_unavailable_after_bounded_retries(
    standin: SlackStandIn, client: SlackClient
) -> None:
    with standin.outage(status=503), pytest.raises(SlackUnavailable) as info:
        client.post("#incident", "x")
    assert info.value.status == 503
    assert [c["status"] for c in standin.calls()] == [503, 503]  # server_error_retries=1
    client.post("#incident", "back again")


def test_unreachable_slack_is_slack_unavailable(slack_settings: StanchSettings) -> None:
    with SlackStandIn() as gone:
        url = gone.api_url
    settings = slack_settings.model_copy(update={"slack_base_url": url})
    client = SlackClient.from_settings(settings, connection_retries=0)
    with pytest.raises(SlackUnavailable, match="could not reach Slack"):
        client.auth_test()


def test_invalid_token_is_permanent_and_never_leaks(
    standin: SlackStandIn, slack_settings: StanchSettings
) -> None:
    secret = "xoxb-0000-not-the-right-one"
    settings = slack_settings.model_copy(update={"slack_token": SecretStr(secret)})
    client = SlackClient.from_settings(settings)
    with pytest.raises(PermanentActionError, match="invalid_auth") as info:
        client.post("#incident", "x")
    assert not info.value.transient
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert secret not in str(info.value)
    recorded = json.dumps(standin.calls())
    assert secret not in recorded and standin.token not in recorded
    assert standin.calls()[0]["token_ok"] is False


def test_invalid_blocks_and_unknown_message_are_permanent(standin: SlackStandIn, client: SlackClient) -> None:
    too_long = [{"type": "section", "text": {"type": "mrkdwn", "text": "a" * 3001}}]
    with pytest.raises(PermanentActionError, match="invalid_blocks"):
        client.post("#incident", "x", too_long)
    too_many = [{"type": "section", "text": {"type": "mrkdwn", "text": "a"}}] * 51
    with pytest.raises(PermanentActionError, match="invalid_blocks"):
        client.post("#incident", "x", too_many)
    with pytest.raises(PermanentActionError, match="message_not_found"):
        client.update("C0INCIDENT", "1.000000", "x")


def test_missing_token_and_drill_safety(slack_settings: StanchSettings) -> None:
    with pytest.raises(ConfigurationError):
        SlackClient.from_settings(slack_settings.model_copy(update={"slack_token": None}))
    real = slack_settings.model_copy(update={"slack_base_url": "https://slack.com/api/"})
    with pytest.raises(DrillSafetyError):
        SlackClient.from_settings(real, drill=True)
    SlackClient.from_settings(slack_settings, drill=True)  # loopback stand-in is fine


def test_usergroup_members_and_users(client: SlackClient) -> None:
    assert client.usergroup_members("@security-leads") == ["U0LEAD1", "U0LEAD2"]
    assert client.usergroup_members("S0SECLEADS") == ["U0LEAD1", "U0LEAD2"]
    assert client.user_info("U0ONCALL")["name"] == "oncall"
    with pytest.raises(PermanentActionError, match="user_not_found"):
        client.user_info("U0NOBODY")
    with pytest.raises(PermanentActionError):
        client.usergroup_members("@nope")


def test_incident_thread_lifecycle(standin: SlackStandIn, client: SlackClient) -> None:
    thread = IncidentThread(client, "#incident", incident_id="INC-1")
    steps: list[object] = [("scope", "succeeded"), ("revoke-ci-keys", "running")]
    thread.update_status("INC-1", "Compromised dependency", "sev1", "containing", steps)
    assert thread.ts and thread.channel == "C0INCIDENT"
    thread.post_update("revoke-ci-keys: 12 keys deactivated")
    ts_list = thread.post_report("revoke-ci-keys", "# Done\n" + "line\n" * 3000, "succeeded", {"keys": 12})
    assert len(ts_list) >= 2
    thread.update_status("INC-1", "Compromised dependency", "sev1", "contained", [("scope", "succeeded")])

    replies = standin.messages("C0INCIDENT", thread_ts=thread.ts)
    assert len(replies) == 1 + len(ts_list)
    header = next(m for m in standin.messages("C0INCIDENT") if m["ts"] == thread.ts)
    assert "contained" in header["text"]
    assert len(standin.calls("chat.update")) == 1

    again = IncidentThread.attach(client, thread.channel, thread.ts)
    again.post_update("attached")
    with pytest.raises(ConfigurationError):
        IncidentThread(client).post_update("not started")


def test_http_control_endpoints(standin: SlackStandIn, client: SlackClient) -> None:
    body = json.dumps({"method": "chat.postMessage", "count": 1, "retry_after": 0}).encode()
    req = urllib.request.Request(standin.url + "/_fault", data=body, method="POST")
    assert json.load(urllib.request.urlopen(req))["ok"] is True
    client.post("#incident", "x")
    calls = json.load(urllib.request.urlopen(standin.url + "/_calls?method=chat.postMessage"))["calls"]
    assert [c["status"] for c in calls] == [429, 200]
    assert calls[0]["headers"]["Authorization"] == "Bearer ***"
    urllib.request.urlopen(urllib.request.Request(standin.url + "/_calls", method="DELETE"))
    assert standin.calls() == []
