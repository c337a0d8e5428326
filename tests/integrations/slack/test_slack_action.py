"""The ``slack.post_message`` action: registry, describe, escaping, threads, drill mode."""

from __future__ import annotations

from typing import Any

import pytest

from integrations.base import ActionContext, ActionRegistry
from integrations.errors import DrillSafetyError, InputError
from integrations.sandbox.slack_standin import SlackStandIn
from integrations.settings import StanchSettings
from integrations.slack import (
    SlackUnavailable,
    bind_incident_thread,
    register,
    unbind_incident_thread,
)


@pytest.fixture
def registry() -> ActionRegistry:
    reg = ActionRegistry()
    register(reg)
    return reg


def _ctx(settings: StanchSettings, *, drill: bool = False, events: list[Any] | None = None) -> ActionContext:
    sink = events if events is not None else []
    return ActionContext(
        incident_id="INC-42",
        step_id="notify",
        settings=settings,
        drill=drill,
        record=lambda kind, data: sink.append((kind, data)),
    )


def test_registered_and_described(registry: ActionRegistry, slack_settings: StanchSettings) -> None:
    spec = registry.get("slack.post_message")
    assert spec.mutating and not spec.idempotent
    params = spec.validate_params({"text": "hi", "thread": True})
    assert spec.describe is not None
    (op,) = spec.describe(_ctx(slack_settings), params)
    assert (op.service, op.operation, op.resources) == ("slack", "chat.postMessage", ["#incident"])
    with pytest.raises(ValueError):
        spec.validate_params({"text": "hi", "bogus": 1})


def test_post_escapes_untrusted_text(
    registry: ActionRegistry, standin: SlackStandIn, slack_settings: StanchSettings
) -> None:
    events: list[Any] = []
    ctx = _ctx(slack_settings, events=events)
    result = registry.get("slack.post_message").execute(
        ctx, {"text": "axios <!channel> <http://evil|click>", "mentions": ["@S0SECLEADS", "U0ONCALL"]}
    )
    assert result.channel == "C0INCIDENT" and result.ts and result.thread_ts is None
    (call,) = standin.calls("chat.postMessage")
    block_text = call["params"]["blocks"][0]["text"]["text"]
    assert block_text == "<!subteam^S0SECLEADS> <@U0ONCALL> axios &lt;!channel&gt; &lt;http://evil|click&gt;"
    assert "<!channel>" not in call["params"]["text"]
    assert [k for k, _ in events] == ["intent.recorded", "intent.settled", "slack.message_posted"]
    assert slack_settings.slack_token is not None
    assert slack_settings.slack_token.get_secret_value() in ctx.secrets


def test_bad_mention_is_input_error(registry: ActionRegistry, slack_settings: StanchSettings) -> None:
    with pytest.raises(InputError):
        registry.get("slack.post_message").execute(
            _ctx(slack_settings), {"text": "x", "mentions": ["<!channel>"]}
        )


def test_thread_true_posts_in_bound_incident_thread(
    registry: ActionRegistry, standin: SlackStandIn, slack_settings: StanchSettings
) -> None:
    spec = registry.get("slack.post_message")
    parent = spec.execute(_ctx(slack_settings), {"text": "header"})
    bind_incident_thread("INC-42", parent.channel, parent.ts)
    try:
        reply = spec.execute(_ctx(slack_settings), {"text": "update", "thread": True})
    finally:
        unbind_incident_thread("INC-42")
    assert reply.thread_ts == parent.ts
    assert standin.calls("chat.postMessage")[-1]["params"]["thread_ts"] == parent.ts
    unbound = spec.execute(_ctx(slack_settings), {"text": "no thread", "thread": True})
    assert unbound.thread_ts is None


def test_drill_banner_and_safety(
    registry: ActionRegistry, standin: SlackStandIn, slack_settings: StanchSettings
) -> None:
    spec = registry.get("slack.post_message")
    spec.execute(_ctx(slack_settings, drill=True), {"text": "drill notice"})
    call = standin.calls("chat.postMessage")[-1]
    assert "DRILL" in call["params"]["blocks"][0]["text"]["text"] and "[DRILL]" in call["params"]["text"]
    real = slack_settings.model_copy(update={"slack_base_url": "https://slack.com/api/"})
    with pytest.raises(DrillSafetyError):
        spec.execute(_ctx(real, drill=True), {"text": "x"})


def test_long_text_is_split_and_outage_is_transient(
    registry: ActionRegistry, standin: SlackStandIn, slack_settings: StanchSettings
) -> None:
    spec = registry.get("slack.post_message")
    spec.execute(_ctx(slack_settings), {"text": "y" * 7000})
    assert len(standin.calls("chat.postMessage")) == 3
    with standin.outage(), pytest.raises(SlackUnavailable):
        spec.execute(_ctx(slack_settings), {"text": "x"})
