"""Tell affected users by e-mail through SES (one message per recipient).

Owns: ``aws.ses.send_email``. One ``SendEmail`` per recipient, so one bad address does not
block the others and every recipient gets its own message id for the report.

Delivery semantics (``delivery``, default ``at-most-once``): SES has no idempotency token and
cannot be asked afterwards whether a message went out, so each recipient's send is guarded by an
*intent* in the incident timeline (``ActionContext.intent``, key incident:step:item:email:<address>),
recorded before ``SendEmail`` and settled after it. A recipient whose intent is settled ``sent``
is never sent to again (engine retries, ``stanch resume``); one whose send was started but never
confirmed (the process died, or the answer was lost: timeout, reset) is, by default, **not** sent
again: it is reported in ``possibly_sent`` and listed under "Possibly sent" in the post-mortem.
``delivery: at-least-once`` sends it again instead (a duplicate is possible, a lost notice is not).
An error *answer* from SES (throttling, rejection, 5xx) means SES did not accept the message: the
intent is settled ``not_sent`` and the engine's retry sends it. Addresses that are not
syntactically e-mail addresses are reported in ``skipped``; an address SES rejects permanently is
also skipped (``MessageRejected`` for a recipient is not retryable), unless *every* recipient is
rejected — then the step fails (most likely the sender is not verified).

Must not touch: ``flows``, ``prefect``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from pydantic import Field

from integrations.aws._common import AwsParams, region_of
from integrations.aws.errors import aws_call
from integrations.aws.session import clients_for
from integrations.base import ActionContext, ActionResult, ActionSpec, PlannedOperation
from integrations.errors import ActionError, PermanentActionError

__all__ = ["SEND", "Delivery", "SendEmailParams", "SendEmailResult", "SentEmail", "SkippedRecipient", "deliver"]

Delivery = Literal["at-most-once", "at-least-once"]

_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")


class SendEmailParams(AwsParams):
    sender: str = Field(min_length=3, description="Verified SES identity")
    recipients: list[str] = Field(min_length=1)
    subject: str = Field(min_length=1, max_length=998)
    body: str = Field(min_length=1, description="Plain-text body")
    delivery: Delivery = Field(
        default="at-most-once",
        description="After a crash between a send and its record: at-most-once (default) does not "
        "send again and reports the recipient as possibly sent; at-least-once sends again.",
    )


class SentEmail(ActionResult):
    recipient: str
    message_id: str


class SkippedRecipient(ActionResult):
    recipient: str
    reason: str


class SendEmailResult(ActionResult):
    sent: list[SentEmail]
    skipped: list[SkippedRecipient]
    possibly_sent: list[str] = Field(
        default_factory=list, description="Sends started but never confirmed, not repeated (at-most-once)"
    )


def deliver(
    ctx: ActionContext, recipient: str, delivery: Delivery, send: Callable[[], str], **record: str
) -> tuple[str, str | None]:
    """Send to one recipient at most/at least once across retries and crashes (see module doc).

    Returns ``("sent", message_id)`` (sent now), ``("confirmed", message_id)`` (an earlier
    attempt's send, not repeated) or ``("possibly_sent", None)``. ``send()`` makes the call and
    returns the message id; it raises ``ActionError`` (with ``aws_code`` when SES answered).
    """
    key = ctx.intent_key("email", recipient.lower())
    prior = ctx.prior_intent(key)
    state = prior.get("state") if prior else None
    if prior is not None and state == "sent":
        return "confirmed", str(prior.get("message_id") or "")
    if state in ("open", "possibly_sent") and delivery == "at-most-once":
        if state == "open":
            ctx.settle(key, "possibly_sent", {"recipient": recipient, "policy": delivery, **record})
        return "possibly_sent", None
    ctx.intent(key, {"sink": "ses", "recipient": recipient, "policy": delivery, **record})
    try:
        message_id = send()
    except ActionError as exc:
        if exc.aws_code is not None:  # SES answered with an error: it did not accept the message
            ctx.settle(key, "not_sent", {"recipient": recipient, "error": exc.aws_code})
        raise  # no answer (timeout, reset): the intent stays open — possibly sent
    ctx.settle(key, "sent", {"recipient": recipient, "message_id": message_id})
    return "sent", message_id


def _send(ctx: ActionContext, params: SendEmailParams) -> SendEmailResult:
    ses = clients_for(ctx, params.account, region_of(ctx, params))("ses")
    sent: list[SentEmail] = []
    skipped: list[SkippedRecipient] = []
    rejected: list[ActionError] = []
    possibly: list[str] = []
    seen: set[str] = set()
    for raw in params.recipients:
        recipient = raw.strip()
        if recipient.lower() in seen:
            skipped.append(SkippedRecipient(recipient=recipient, reason="duplicate"))
            continue
        seen.add(recipient.lower())
        if not _EMAIL.match(recipient):
            skipped.append(SkippedRecipient(recipient=recipient, reason="not an e-mail address"))
            continue

        def _call(to: str = recipient) -> str:
            with aws_call("ses", "SendEmail"):
                resp = ses.send_email(
                    Source=params.sender,
                    Destination={"ToAddresses": [to]},
                    Message={
                        "Subject": {"Data": params.subject, "Charset": "UTF-8"},
                        "Body": {"Text": {"Data": params.body, "Charset": "UTF-8"}},
                    },
                )
            return str(resp["MessageId"])

        try:
            outcome, message_id = deliver(ctx, recipient, params.delivery, _call)
        except PermanentActionError as exc:
            if exc.aws_code not in {"MessageRejected", "InvalidParameterValue"}:
                raise
            rejected.append(exc)
            skipped.append(SkippedRecipient(recipient=recipient, reason=f"{exc.aws_code}: {exc}"))
            continue
        if outcome == "possibly_sent" or message_id is None:
            possibly.append(recipient)
            continue
        sent.append(SentEmail(recipient=recipient, message_id=message_id))
        if outcome == "sent":
            ctx.record("aws.ses.email_sent", {"recipient": recipient, "message_id": message_id})
    if rejected and not sent and not possibly:
        raise rejected[0]
    return SendEmailResult(sent=sent, skipped=skipped, possibly_sent=possibly)


def _describe(ctx: ActionContext, params: SendEmailParams) -> list[PlannedOperation]:
    return [
        PlannedOperation(
            service="ses",
            operation="SendEmail",
            account=params.account,
            region=params.region,
            resources=list(dict.fromkeys(r.strip() for r in params.recipients)),
            note=f"from {params.sender}: {params.subject!r} (one message per recipient, {params.delivery})",
        )
    ]


SEND: ActionSpec[SendEmailParams, SendEmailResult] = ActionSpec(
    name="aws.ses.send_email",
    summary="E-mail each recipient through SES (plain text, one message per recipient).",
    params=SendEmailParams,
    result=SendEmailResult,
    run=_send,
    mutating=True,
    idempotent=False,
    describe=_describe,
)
