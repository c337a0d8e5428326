"""Tell affected users through an SES template: one personalised message per recipient.

Owns: ``aws.ses.send_templated_email``. The template (``CreateTemplate``, managed outside stanch)
is checked first; then one ``SendTemplatedEmail`` per recipient with that recipient's ``data`` as
``TemplateData``, so one bad address does not block the others and each gets its own message id.

Delivery: as ``aws.ses.send_email`` (``integrations.aws.ses.deliver``): one intent per recipient in
the incident timeline, so neither the engine's retries nor ``stanch resume`` e-mail anyone twice;
a send started but never confirmed is not repeated by default (``possibly_sent``, listed in the
post-mortem) unless ``delivery: at-least-once``. Invalid addresses and duplicates are skipped; a
recipient SES rejects is skipped unless every recipient is rejected (then the step fails —
usually an unverified sender). ``data`` is never recorded.

Must not touch: ``flows``, ``prefect``.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from integrations.aws._common import AwsParams, is_code, region_of, safe_describe
from integrations.aws.errors import aws_call
from integrations.aws.ses import _EMAIL, Delivery, SentEmail, SkippedRecipient, deliver
from integrations.aws.session import clients_for
from integrations.base import ActionContext, ActionResult, ActionSpec, PlannedOperation
from integrations.errors import ActionError, PermanentActionError

__all__ = ["SEND_TEMPLATED", "Recipient", "SendTemplatedParams", "SendTemplatedResult"]


class Recipient(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3)
    data: dict[str, Any] = Field(default_factory=dict, description="Template variables for this recipient")


class SendTemplatedParams(AwsParams):
    sender: str = Field(min_length=3, description="Verified SES identity")
    template: str = Field(min_length=1)
    recipients: list[Recipient] = Field(min_length=1)
    configuration_set: str | None = None
    delivery: Delivery = Field(
        default="at-most-once",
        description="After a crash between a send and its record: at-most-once (default) does not "
        "send again and reports the recipient as possibly sent; at-least-once sends again.",
    )


class SendTemplatedResult(ActionResult):
    template: str
    sent: list[SentEmail]
    skipped: list[SkippedRecipient]
    possibly_sent: list[str] = Field(
        default_factory=list, description="Sends started but never confirmed, not repeated (at-most-once)"
    )


def _check_template(ses: Any, template: str) -> None:
    with aws_call("ses", "GetTemplate"):
        ses.get_template(TemplateName=template)


def _send(ctx: ActionContext, params: SendTemplatedParams) -> SendTemplatedResult:
    ses = clients_for(ctx, params.account, region_of(ctx, params))("ses")
    _check_template(ses, params.template)
    sent: list[SentEmail] = []
    skipped: list[SkippedRecipient] = []
    rejected: list[ActionError] = []
    possibly: list[str] = []
    seen: set[str] = set()
    for rcpt in params.recipients:
        email = rcpt.email.strip()
        if email.lower() in seen:
            skipped.append(SkippedRecipient(recipient=email, reason="duplicate"))
            continue
        seen.add(email.lower())
        if not _EMAIL.match(email):
            skipped.append(SkippedRecipient(recipient=email, reason="not an e-mail address"))
            continue
        kwargs: dict[str, Any] = {
            "Source": params.sender,
            "Destination": {"ToAddresses": [email]},
            "Template": params.template,
            "TemplateData": json.dumps(rcpt.data, default=str),
        }
        if params.configuration_set:
            kwargs["ConfigurationSetName"] = params.configuration_set

        def _call(kw: dict[str, Any] = kwargs) -> str:
            with aws_call("ses", "SendTemplatedEmail"):
                return str(ses.send_templated_email(**kw)["MessageId"])

        try:
            outcome, message_id = deliver(ctx, email, params.delivery, _call, template=params.template)
        except PermanentActionError as exc:
            if not is_code(exc, "MessageRejected", "InvalidParameterValue"):
                raise
            rejected.append(exc)
            skipped.append(SkippedRecipient(recipient=email, reason=f"{exc.aws_code}: {exc}"))
            continue
        if outcome == "possibly_sent" or message_id is None:
            possibly.append(email)
            continue
        sent.append(SentEmail(recipient=email, message_id=message_id))
        if outcome == "sent":
            ctx.record(
                "aws.ses.templated_email_sent",
                {"recipient": email, "template": params.template, "message_id": message_id},
            )
    if rejected and not sent and not possibly:
        raise rejected[0]
    return SendTemplatedResult(template=params.template, sent=sent, skipped=skipped, possibly_sent=possibly)


def _plan(params: SendTemplatedParams, note: str) -> list[PlannedOperation]:
    return [
        PlannedOperation(
            service="ses",
            operation="SendTemplatedEmail",
            account=params.account,
            region=params.region,
            resources=list(dict.fromkeys(r.email.strip() for r in params.recipients)),
            note=f"from {params.sender}, template {params.template!r}; {note}",
        )
    ]


def _describe(ctx: ActionContext, params: SendTemplatedParams) -> list[PlannedOperation]:
    _check_template(clients_for(ctx, params.account, region_of(ctx, params))("ses"), params.template)
    return _plan(params, "one message per recipient")


def _describe_blind(ctx: ActionContext, params: SendTemplatedParams) -> list[PlannedOperation]:
    return _plan(params, "one message per recipient (template not checked)")


SEND_TEMPLATED: ActionSpec[SendTemplatedParams, SendTemplatedResult] = ActionSpec(
    name="aws.ses.send_templated_email",
    summary="E-mail each recipient through an SES template with their own template data.",
    params=SendTemplatedParams,
    result=SendTemplatedResult,
    run=_send,
    mutating=True,
    idempotent=False,
    describe=safe_describe(_describe, _describe_blind),
)
