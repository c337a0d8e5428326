"""A small, real action registry for spec tests (no integrations, no network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from integrations.base import ActionContext, ActionParams, ActionRegistry, ActionResult, ActionSpec

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = Path(__file__).parent / "golden"


class MatchAdvisory(ActionParams):
    advisory: str
    inventory: str = "inventory.yaml"


class Affected(BaseModel):
    account: str
    ci_user: str
    service: str


class MatchResult(ActionResult):
    affected: list[Affected]
    packages: list[str]


class PostMessage(ActionParams):
    channel: str
    text: str


class AccessKeys(ActionParams):
    account: str
    user: str


class KeysResult(ActionResult):
    deactivated: list[str]


class RotateCertificate(ActionParams):
    certificate_arn: str
    region: str = "us-east-1"


class PublishRelease(ActionParams):
    bucket: str
    key: str
    version: str


class SendEmail(ActionParams):
    to: list[str]
    subject: str
    body: str


class Done(ActionResult):
    ok: bool = True


def _noop(ctx: ActionContext, params: Any) -> Any:  # never called by spec tests
    raise AssertionError("spec tests never run actions")


def _spec(name: str, params: type[ActionParams], result: type[ActionResult] = Done, **kw: Any) -> ActionSpec:
    return ActionSpec(
        name=name, summary=name, params=params, result=result, run=_noop, mutating=True, idempotent=True, **kw
    )


def build_registry() -> ActionRegistry:
    registry = ActionRegistry()
    registry.register_all(
        [
            _spec("inventory.match_advisory", MatchAdvisory, MatchResult),
            _spec("slack.post_message", PostMessage),
            _spec(
                "aws.iam.deactivate_access_keys",
                AccessKeys,
                KeysResult,
                compensation="aws.iam.reactivate_access_keys",
            ),
            _spec("aws.iam.reactivate_access_keys", AccessKeys),
            _spec("aws.acm.rotate_certificate", RotateCertificate),
            _spec("aws.s3.publish_release", PublishRelease),
            _spec("aws.ses.send_email", SendEmail),
        ]
    )
    return registry


@pytest.fixture(scope="session")
def registry() -> ActionRegistry:
    return build_registry()
