"""Tell affected users by e-mail through SES (one message per recipient).

Owns: ``aws.ses.send_email``. One ``SendEmail`` per recipient, so one bad address does not
block the others and every recipient gets its own message id for the report.

Delivery semantics: **at least once**. SES has no idempotency token; within one call duplicates
are dropped, but if the engine retries the step after a transient failure, recipients that were
already sent to before the failure are sent to again. (A marker object per recipient would need a
bucket every runbook can write to; not worth it for an update notice.) Addresses that are not
syntactically e-mail addresses are reported in ``skipped``; an address SES rejects permanently is
also skipped (``MessageRejected`` for a recipient is not retryable), unless *every* recipient is
rejected — then the step fails (most likely the sender is not verified).

Must not touch: ``flows``, ``prefect``.
"""

from __future__ import annotations

import re

from pydantic import Field

from integrations.aws._common import AwsParams, region_of
from integrations.aws.errors import aws_call
from integrations.aws.session import clients_for
from integrations.base import ActionContext, ActionResult, ActionSpec, PlannedOperation
from integrations.errors import ActionError, PermanentActionError

__all__ = ["SEND", "SendEmailParams", "SendEmailResult", "SentEmail", "SkippedRecipient"]

_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")


class SendEmailParams(AwsParams):
    sender: str = Field(min_length=3, description="Verified SES identity")
    recipients: list[str] = Field(min_length=1)
    subject: str = Field(min_length=1, max_length=998)
    body: str = Field(min_length=1, description="Plain-text body")


class SentEmail(ActionResult):
    recipient: str
    message_id: str


class SkippedRecipient(ActionResult):
    recipient: str
    reason: str


class SendEmailResult(ActionResult):
    sent: list[SentEmail]
    skipped: list[SkippedRecipient]


def _send(ctx: ActionContext, params: SendEmailParams) -> SendEmailResult:
    ses = clients_for(ctx, params.account, region_of(ctx, params))("ses")
    sent: list[SentEmail] = []
    skipped: list[SkippedRecipient] = []
    rejected: list[ActionError] = []
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
        try:
            with aws_call("ses", "SendEmail"):
                resp = ses.send_email(
                    Source=params.sender,
                    Destination={"ToAddresses": [recipient]},
                    Message={
                        "Subject": {"Data": params.subject, "Charset": "UTF-8"},
                        "Body": {"Text": {"Data": params.body, "Charset": "UTF-8"}},
                    },
                )
        except PermanentActionError as exc:
            if exc.aws_code not in {"MessageRejected", "InvalidParameterValue"}:
                raise
            rejected.append(exc)
            skipped.append(SkippedRecipient(recipient=recipient, reason=f"{exc.aws_code}: {exc}"))
            continue
        sent.append(SentEmail(recipient=recipient, message_id=resp["MessageId"]))
        ctx.record("aws.ses.email_sent", {"recipient": recipient, "message_id": resp["MessageId"]})
    if rejected and not sent:
        raise rejected[0]
    return SendEmailResult(sent=sent, skipped=skipped)


def _describe(ctx: ActionContext, params: SendEmailParams) -> list[PlannedOperation]:
    return [
        PlannedOperation(
            service="ses",
            operation="SendEmail",
            account=params.account,
            region=params.region,
            resources=list(dict.fromkeys(r.strip() for r in params.recipients)),
            note=f"from {params.sender}: {params.subject!r} (one message per recipient, at-least-once)",
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
