"""aws.ses.send_templated_email and aws.sns.publish against moto over HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import urllib3

from integrations.aws import ses_templates, sns
from integrations.base import ActionContext
from integrations.errors import PermanentActionError
from integrations.sandbox.faults import inject_fault
from integrations.settings import StanchSettings

ACCOUNT = "222222222222"
SENDER = "security@desktop-app.example"


def _templated_sent(endpoint: str) -> list[dict[str, Any]]:
    data = json.loads(urllib3.request("GET", f"{endpoint}/moto-api/data.json").data)
    return list(data.get("ses", {}).get("TemplateMessage", []))


def _ses(clients: Callable[[str], Any]) -> None:
    cli = clients("ses")
    cli.verify_email_identity(EmailAddress=SENDER)
    cli.create_template(
        Template={
            "TemplateName": "update-now",
            "SubjectPart": "Update {{app}} to {{version}}",
            "TextPart": "Hi {{name}}, please update {{app}} to {{version}}.",
            "HtmlPart": "<p>Hi {{name}}</p>",
        }
    )


def _recipients(*emails: str) -> list[dict[str, Any]]:
    return [{"email": e, "data": {"name": e.split("@")[0], "app": "Desktop", "version": "4.2.1"}} for e in emails]


def test_one_templated_email_per_recipient(
    aws_settings: StanchSettings, clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]
) -> None:
    _ses(clients)
    params = {
        "account": ACCOUNT,
        "sender": SENDER,
        "template": "update-now",
        "recipients": _recipients("ann@x.example", "bob@x.example", "ANN@x.example", "nope"),
    }
    ctx = make_ctx()
    result = ses_templates.SEND_TEMPLATED.execute(ctx, params)
    assert [s.recipient for s in result.sent] == ["ann@x.example", "bob@x.example"]
    assert [s.reason for s in result.skipped] == ["duplicate", "not an e-mail address"]
    sent = _templated_sent(aws_settings.aws_endpoint_url or "")
    assert sorted(m["destinations"]["ToAddresses"][0] for m in sent) == ["ann@x.example", "bob@x.example"]
    assert {json.loads(m["template_data"])["name"] for m in sent} == {"ann", "bob"}
    assert "4.2.1" not in json.dumps(ctx.recorded)  # type: ignore[attr-defined]  # template data is not recorded


def test_throttled_midway_then_retry_sends_nobody_twice(
    aws_settings: StanchSettings,
    clients: Callable[[str], Any],
    make_ctx: Callable[..., ActionContext],
    engine_retry: Callable[..., Any],
) -> None:
    _ses(clients)
    ep = aws_settings.aws_endpoint_url or ""
    emails = ("a@x.example", "b@x.example", "c@x.example")
    params = {"account": ACCOUNT, "sender": SENDER, "template": "update-now", "recipients": _recipients(*emails)}
    # the first send goes through, then the next one is throttled: the retry must not e-mail a@ again
    injected: list[str] = []

    def throttle_next(**_: Any) -> None:
        if not injected:
            injected.append(inject_fault(ep, "SendTemplatedEmail", code="Throttling", count=1))

    clients("ses").meta.events.register("after-call.ses.SendTemplatedEmail", throttle_next)

    def attempt() -> Any:
        return ses_templates.SEND_TEMPLATED.execute(make_ctx(step_id="notify"), params)

    result, failures = engine_retry(attempt)
    assert len(failures) == 1 and failures[0].operation == "SendTemplatedEmail"
    assert [s.recipient for s in result.sent] == list(emails)
    assert sorted(m["destinations"]["ToAddresses"][0] for m in _templated_sent(ep)) == list(emails)  # once each


def test_missing_template_and_unverified_sender_are_permanent(
    clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]
) -> None:
    _ses(clients)
    base = {"account": ACCOUNT, "sender": SENDER, "recipients": _recipients("a@x.example")}
    with pytest.raises(PermanentActionError) as err:
        ses_templates.SEND_TEMPLATED.execute(make_ctx(), {**base, "template": "nope"})
    assert err.value.operation == "GetTemplate" and err.value.aws_code == "TemplateDoesNotExist"
    with pytest.raises(PermanentActionError) as err:
        ses_templates.SEND_TEMPLATED.execute(
            make_ctx(), {**base, "template": "update-now", "sender": "x@unverified.example"}
        )
    assert err.value.aws_code == "MessageRejected"


def _topic(clients: Callable[[str], Any], fifo: bool = False) -> tuple[str, str]:
    sns_cli, sqs = clients("sns"), clients("sqs")
    suffix = ".fifo" if fifo else ""
    attrs = {"FifoTopic": "true", "ContentBasedDeduplication": "false"} if fifo else {}
    topic = sns_cli.create_topic(Name=f"incidents{suffix}", Attributes=attrs)["TopicArn"]
    q_attrs = {"FifoQueue": "true"} if fifo else {}
    url = sqs.create_queue(QueueName=f"pager{suffix}", Attributes=q_attrs)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns_cli.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return topic, url


def _received(sqs: Any, url: str) -> list[dict[str, Any]]:
    msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages", [])
    return [json.loads(m["Body"]) | {"_attrs": m.get("Attributes", {})} for m in msgs]


def test_publish_standard_topic(
    aws_settings: StanchSettings,
    clients: Callable[[str], Any],
    make_ctx: Callable[..., ActionContext],
    engine_retry: Callable[..., Any],
) -> None:
    topic, url = _topic(clients)
    inject_fault(aws_settings.aws_endpoint_url or "", "Publish", code="Throttling", count=1)
    params = {"account": ACCOUNT, "topic_arn": topic, "subject": "INC-42: keys rotated", "message": "all contained"}
    result, failures = engine_retry(lambda: sns.PUBLISH.execute(make_ctx(), params))
    assert len(failures) == 1 and not result.fifo and result.deduplication_id is None
    got = _received(clients("sqs"), url)
    assert [(m["Subject"], m["Message"], m["MessageId"]) for m in got] == [
        ("INC-42: keys rotated", "all contained", result.message_id)
    ]


def test_publish_fifo_topic_uses_step_dedup_id(
    clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]
) -> None:
    topic, url = _topic(clients, fifo=True)
    params = {"account": ACCOUNT, "topic_arn": topic, "subject": "INC-42", "message": "contained"}
    first = sns.PUBLISH.execute(make_ctx(step_id="tell"), params)
    again = sns.PUBLISH.execute(make_ctx(step_id="tell"), params)  # re-run: same dedup id
    assert first.fifo and first.deduplication_id == again.deduplication_id == sns.deduplication_id(
        make_ctx(step_id="tell")
    )
    got = _received(clients("sqs"), url)
    assert len(got) == 1 and got[0]["_attrs"].get("MessageDeduplicationId") == first.deduplication_id


def test_publish_errors(
    aws_settings: StanchSettings, clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]
) -> None:
    missing = f"arn:aws:sns:us-east-1:{ACCOUNT}:nope"
    params = {"account": ACCOUNT, "topic_arn": missing, "subject": "s", "message": "m"}
    with pytest.raises(PermanentActionError) as err:
        sns.PUBLISH.execute(make_ctx(), params)
    assert err.value.aws_code == "NotFound" and err.value.operation == "GetTopicAttributes"
    topic, _ = _topic(clients)
    inject_fault(aws_settings.aws_endpoint_url or "", "Publish", status=403, code="AuthorizationError")
    with pytest.raises(PermanentActionError) as err:
        sns.PUBLISH.execute(make_ctx(), {**params, "topic_arn": topic})
    assert "missing permission sns:Publish" in str(err.value)
    with pytest.raises(ValueError):
        sns.PUBLISH.validate_params({**params, "subject": "two\nlines"})


def _plain_sent(endpoint: str) -> list[str]:
    data = json.loads(urllib3.request("GET", f"{endpoint}/moto-api/data.json").data)
    return [to for m in data.get("ses", {}).get("Message", []) for to in m["destinations"]["ToAddresses"]]


@pytest.mark.parametrize("delivery", ["at-most-once", "at-least-once"])
def test_send_started_but_never_confirmed_follows_the_delivery_policy(
    aws_settings: StanchSettings, clients: Callable[[str], Any], delivery: str
) -> None:
    """A resumed run finds b@'s intent open (the process died between SendEmail and its record):
    at-most-once does not send again and reports it possibly sent; at-least-once sends it. a@
    (settled sent) is never sent again, c@ (never started) is sent once."""
    from integrations.aws import ses
    from integrations.base import IntentLedger

    clients("ses").verify_email_identity(EmailAddress=SENDER)
    tag = delivery.replace("-", "")
    a, b, c = (f"{n}.{tag}@users.example" for n in "abc")
    events: list[tuple[str, dict[str, Any]]] = []
    ctx = ActionContext(incident_id="INC-POLICY", step_id=f"mail-{tag}", settings=aws_settings,
                        record=lambda kind, data: events.append((kind, data)))
    ledger = IntentLedger({ctx.intent_key("email", a): {"state": "sent", "message_id": "m-a"},
                           ctx.intent_key("email", b): {"state": "open"}})
    ctx.intents = ledger
    params = {"account": ACCOUNT, "sender": SENDER, "recipients": [a, b, c], "subject": "s", "body": "b",
              "delivery": delivery}
    result = ses.SEND.execute(ctx, params)
    sent = [to for to in _plain_sent(aws_settings.aws_endpoint_url or "") if to.endswith(f"{tag}@users.example")]
    if delivery == "at-most-once":
        assert sorted(sent) == [c] and result.possibly_sent == [b]
        assert ("intent.settled", "possibly_sent") in [(k, d.get("outcome")) for k, d in events]
    else:
        assert sorted(sent) == [b, c] and result.possibly_sent == []
    assert result.sent[0].recipient == a and result.sent[0].message_id == "m-a"
    assert all("Subject" not in json.dumps(d) for _, d in events)  # intents never carry the message
    again = ses.SEND.execute(ctx, params)  # a retry in the same run sends nobody again
    assert sorted(to for to in _plain_sent(aws_settings.aws_endpoint_url or "")
                  if to.endswith(f"{tag}@users.example")) == sorted(sent)
    assert again.possibly_sent == result.possibly_sent
