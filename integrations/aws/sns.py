"""Publish one incident notice to an SNS topic (pager, chat bridges, customer fan-out).

Owns: ``aws.sns.publish``. The topic is read first (``GetTopicAttributes``: a missing topic is a
permanent error, and a ``.fifo`` topic is detected). FIFO topics get ``MessageDeduplicationId`` =
``uuid5(ctx.idempotency_token)`` and a ``MessageGroupId``, so a retried or re-run publish within
SNS's 5-minute de-duplication window is delivered once. Standard topics have no de-duplication:
a single publish either happened or failed, so engine retries are safe; only a re-run after a crash
right after the publish could deliver twice.

No compensation: a notification cannot be recalled (send a correction instead).
Must not touch: ``flows``, ``prefect``; subscriptions and topic policies.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from integrations.aws._common import AwsParams, region_of, safe_describe, token_uuid
from integrations.aws.errors import aws_call
from integrations.aws.session import clients_for
from integrations.base import ActionContext, ActionResult, ActionSpec, PlannedOperation

__all__ = ["PUBLISH", "PublishParams", "PublishResult", "deduplication_id"]


class PublishParams(AwsParams):
    topic_arn: str = Field(pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]+$")
    subject: str = Field(min_length=1, max_length=100, description="E-mail subject (ASCII, one line)")
    message: str = Field(min_length=1, max_length=262_144)
    message_group_id: str = Field(default="stanch", min_length=1, max_length=128, description="FIFO topics only")

    @field_validator("subject")
    @classmethod
    def _one_ascii_line(cls, value: str) -> str:
        if not value.isascii() or "\n" in value or "\r" in value:
            raise ValueError("SNS subjects are one line of ASCII")
        return value


class PublishResult(ActionResult):
    topic_arn: str
    message_id: str
    fifo: bool
    deduplication_id: str | None
    sequence_number: str | None = None


def deduplication_id(ctx: ActionContext) -> str:
    return token_uuid(ctx, "sns-publish")


def _is_fifo(sns: Any, topic_arn: str) -> bool:
    with aws_call("sns", "GetTopicAttributes"):
        attrs = sns.get_topic_attributes(TopicArn=topic_arn)["Attributes"]
    return str(attrs.get("FifoTopic", "false")).lower() == "true" or topic_arn.endswith(".fifo")


def _publish(ctx: ActionContext, params: PublishParams) -> PublishResult:
    sns = clients_for(ctx, params.account, region_of(ctx, params))("sns")
    fifo = _is_fifo(sns, params.topic_arn)
    kwargs: dict[str, Any] = {"TopicArn": params.topic_arn, "Subject": params.subject, "Message": params.message}
    dedup = None
    if fifo:
        dedup = deduplication_id(ctx)
        kwargs.update(MessageDeduplicationId=dedup, MessageGroupId=params.message_group_id)
    with aws_call("sns", "Publish"):
        resp = sns.publish(**kwargs)
    ctx.record("aws.sns.published", {"topic_arn": params.topic_arn, "message_id": resp["MessageId"]})
    return PublishResult(
        topic_arn=params.topic_arn,
        message_id=resp["MessageId"],
        fifo=fifo,
        deduplication_id=dedup,
        sequence_number=resp.get("SequenceNumber"),
    )


def _plan(params: PublishParams, note: str) -> list[PlannedOperation]:
    return [
        PlannedOperation(
            service="sns",
            operation="Publish",
            account=params.account,
            region=params.region,
            resources=[params.topic_arn],
            note=f"{params.subject!r}; {note}",
        )
    ]


def _describe(ctx: ActionContext, params: PublishParams) -> list[PlannedOperation]:
    fifo = _is_fifo(clients_for(ctx, params.account, region_of(ctx, params))("sns"), params.topic_arn)
    return _plan(params, "FIFO topic, de-duplicated per step" if fifo else "standard topic")


def _describe_blind(ctx: ActionContext, params: PublishParams) -> list[PlannedOperation]:
    return _plan(params, "topic type unknown")


PUBLISH: ActionSpec[PublishParams, PublishResult] = ActionSpec(
    name="aws.sns.publish",
    summary="Publish one message to an SNS topic (de-duplicated per step on FIFO topics).",
    params=PublishParams,
    result=PublishResult,
    run=_publish,
    mutating=True,
    idempotent=True,
    describe=safe_describe(_describe, _describe_blind),
)
