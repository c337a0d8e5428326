"""aws.ses.send_email: one message per recipient, read back from moto."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from integrations.aws import ses
from integrations.base import ActionContext
from integrations.errors import PermanentActionError, TransientActionError
from integrations.sandbox.faults import inject_fault
from integrations.sandbox.fleet import SandboxFleet
from integrations.sandbox.observe import sent_emails

ACCOUNT = "222222222222"


def _params(fleet: SandboxFleet, **over: Any) -> dict[str, Any]:
    aud = fleet.audiences["desktop-users"]
    return {
        "account": ACCOUNT,
        "sender": aud.sender,
        "recipients": aud.emails,
        "subject": "Update Desktop App to 4.2.1",
        "body": "A compromised dependency (axios 1.14.1) shipped in 4.2.0. Please update now.",
        **over,
    }


def test_one_email_per_recipient(fleet: SandboxFleet, make_ctx: Callable[..., ActionContext]) -> None:
    result = ses.SEND.execute(make_ctx(), _params(fleet))
    emails = fleet.audiences["desktop-users"].emails
    assert [s.recipient for s in result.sent] == emails and result.skipped == []
    got = sent_emails(fleet.endpoint_url)
    assert sorted(m.to[0] for m in got) == sorted(emails)
    assert {m.source for m in got} == {"security@desktop-app.example"}
    assert {m.id for m in got} == {s.message_id for s in result.sent}


def test_duplicates_and_invalid_are_skipped(
    fleet: SandboxFleet, make_ctx: Callable[..., ActionContext]
) -> None:
    result = ses.SEND.execute(
        make_ctx(), _params(fleet, recipients=["a@x.example", "A@x.example", "not-an-address"])
    )
    assert [s.recipient for s in result.sent] == ["a@x.example"]
    assert [(s.recipient, s.reason) for s in result.skipped] == [
        ("A@x.example", "duplicate"),
        ("not-an-address", "not an e-mail address"),
    ]


def test_unverified_sender_is_permanent(fleet: SandboxFleet, make_ctx: Callable[..., ActionContext]) -> None:
    with pytest.raises(PermanentActionError) as err:
        ses.SEND.execute(make_ctx(), _params(fleet, sender="nobody@unverified.example"))
    assert err.value.aws_code == "MessageRejected" and err.value.operation == "SendEmail"
    assert sent_emails(fleet.endpoint_url) == []


def test_throttled_then_success(fleet: SandboxFleet, make_ctx: Callable[..., ActionContext]) -> None:
    inject_fault(fleet.endpoint_url, "SendEmail", status=400, code="Throttling", count=1)
    with pytest.raises(TransientActionError):
        ses.SEND.execute(make_ctx(), _params(fleet))
    assert len(ses.SEND.execute(make_ctx(), _params(fleet)).sent) == 3
