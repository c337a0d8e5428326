"""The stand-in's response_url webhooks (5 uses, like Slack) and chat.postEphemeral."""

from __future__ import annotations

import json

import urllib3

from integrations.sandbox.slack_standin import SlackStandIn
from integrations.slack.client import SlackClient


def test_response_url_takes_five_posts(standin: SlackStandIn) -> None:
    url = standin.response_url()
    http = urllib3.PoolManager(retries=False)
    statuses = [http.request("POST", url, body=json.dumps({"text": f"n{i}"}),
                             headers={"Content-Type": "application/json"}).status for i in range(6)]
    assert statuses == [200, 200, 200, 200, 200, 404]
    assert [r["body"]["text"] for r in standin.responses(url)][:2] == ["n0", "n1"]
    assert standin.responses(standin.response_url()) == []


def test_post_ephemeral(client: SlackClient) -> None:
    assert client.call("chat.postEphemeral", channel="#incident", user="U0LEAD1", text="hi")["message_ts"]
