"""Tell affected users through an SES template: one personalised message per recipient.

Owns: ``aws.ses.send_templated_email``. The template (``CreateTemplate``, managed outside stanch)
is checked first; then one ``SendTemplatedEmail`` per recipient with that recipient's ``data`` as
``TemplateData``, so one bad address does not block the others and each gets its own message id.

Delivery: SES has no idempotency token. Recipients already sent to are remembered per
``ctx.idempotency_token`` in this process, so the engine's retries after a throttled send do not
e-mail anyone twice; a re-run in a *new* process after a crash can (at-least-once). Invalid
addresses and duplicates are skipped; a recipient SES rejects is skipped unless every recipient is
rejected (then the step fails — usually an unverified sender). ``data`` is never recorded.

Must not touch: ``flows``, ``prefect``.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from integrations.aws._common import AwsParams, is_code, region_of, safe_describe
from integrations.aws.errors import aws_call
from integrations.aws.ses import _EMAIL, SentEmail, SkippedRecipient
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


class SendTemplatedResult(ActionResult):
    template: str
    sent: list[SentEmail]
    skipped: list[SkippedRecipient]


class _SentMemo:
    """{idempotency token: {recipient: message id}} for the last few hundred steps of this process."""

    def __init__(self, size: int = 512) -> None:
        self._data: OrderedDict[str, dict[str, str]] = OrderedDict()
        self._lock = threading.Lock()
        self._size = size

    def get(self, token: str) -> dict[str, str]:
        with self._lock:
            found = self._data.get(token)
            return dict(found) if found else {}

    def add(self, token: str, recipient: str, message_id: str) -> None:
        with self._lock:
            self._data.setdefault(token, {})[recipient] = message_id
            self._data.move_to_end(token)
            while len(self._data) > self._size:
                self._data.popitem(last=False)


_memo = _SentMemo()


def _check_template(ses: Any, template: str) -> None:
    with aws_call("ses", "GetTemplate"):
        ses.get_template(TemplateName=template)


def _send(ctx: ActionContext, params: SendTemplatedParams) -> SendTemplatedResult:
    ses = clients_for(ctx, params.account, region_of(ctx, params))("ses")
    _check_template(ses, params.template)
    token = ctx.idempotency_token
    already = _memo.get(token)
    sent: list[SentEmail] = []
    skipped: list[SkippedRecipient] = []
    rejected: list[ActionError] = []
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
        if email.lower() in already:
            sent.append(SentEmail(recipient=email, message_id=already[email.lower()]))
            continue
        kwargs: dict[str, Any] = {
            "Source": params.sender,
            "Destination": {"ToAddresses": [email]},
            "Template": params.template,
            "TemplateData": json.dumps(rcpt.data, default=str),
        }
        if params.configuration_set:
            kwargs["ConfigurationSetName"] = params.configuration_set
        try:
            with aws_call("ses", "SendTemplatedEmail"):
                message_id = str(ses.send_templated_email(**kwargs)["MessageId"])
        except PermanentActionError as exc:
            if not is_code(exc, "MessageRejected", "InvalidParameterValue"):
                raise
            rejected.append(exc)
            skipped.append(SkippedRecipient(recipient=email, reason=f"{exc.aws_code}: {exc}"))
            continue
        _memo.add(token, email.lower(), message_id)
        sent.append(SentEmail(recipient=email, message_id=message_id))
        ctx.record(
            "aws.ses.templated_email_sent",
            {"recipient": email, "template": params.template, "message_id": message_id},
        )
    if rejected and not sent:
        raise rejected[0]
    return SendTemplatedResult(template=params.template, sent=sent, skipped=skipped)


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
