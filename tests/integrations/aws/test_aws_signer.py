"""aws.signer.rotate_signing_profile against moto over HTTP.

moto 5.2.5 implements Put/Get/CancelSigningProfile and tags only; Signer is a REST-JSON service, so
the fault injector cannot tell its operations apart: faults here match every Signer call (``*``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from integrations.aws import signer
from integrations.base import ActionContext
from integrations.errors import PermanentActionError
from integrations.sandbox.faults import inject_fault
from integrations.settings import StanchSettings

ACCOUNT = "222222222222"
CERT = f"arn:aws:acm:us-east-1:{ACCOUNT}:certificate/11111111-2222-3333-4444-555555555555"


def _profile(cli: Any, name: str = "desktop_app") -> None:
    cli.put_signing_profile(
        profileName=name,
        platformId="AWSLambda-SHA384-ECDSA",
        signingMaterial={"certificateArn": CERT},
        signatureValidityPeriod={"value": 6, "type": "MONTHS"},
    )


def test_rotate_creates_new_and_cancels_old(
    clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]
) -> None:
    cli = clients("signer")
    _profile(cli)
    params = {"account": ACCOUNT, "profile_name": "desktop_app"}
    result = signer.ROTATE.execute(make_ctx(step_id="rotate-profile"), params)
    assert re.fullmatch(r"desktop_app_\d{12}", result.new_profile_name)
    assert result.rotated and result.cancelled_old and result.old_status == "Active"
    new = cli.get_signing_profile(profileName=result.new_profile_name)
    assert new["status"] == "Active" and new["signingMaterial"] == {"certificateArn": CERT}
    assert new["signatureValidityPeriod"] == {"value": 6, "type": "MONTHS"}
    assert new["tags"]["stanch:replaces"] == "desktop_app"
    assert cli.get_signing_profile(profileName="desktop_app")["status"] == "Canceled"

    again = signer.ROTATE.execute(make_ctx(step_id="rotate-profile"), params)
    assert not again.rotated and not again.cancelled_old and again.new_profile_name == result.new_profile_name
    assert signer.ROTATE.compensation is None  # a cancelled profile cannot be re-activated

    # rotating the rotated profile does not stack suffixes
    assert signer.new_profile_name(result.new_profile_name, "202701010000") == "desktop_app_202701010000"


def test_transient_then_resumes_without_a_second_profile(
    aws_settings: StanchSettings,
    clients: Callable[[str], Any],
    make_ctx: Callable[..., ActionContext],
    engine_retry: Callable[..., Any],
) -> None:
    cli = clients("signer")
    _profile(cli)
    ep = aws_settings.aws_endpoint_url or ""
    inject_fault(ep, "*", service="signer", code="ThrottlingException", status=429, count=2)
    params = {"account": ACCOUNT, "profile_name": "desktop_app", "certificate_arn": CERT.replace("5555", "6666")}
    result, failures = engine_retry(lambda: signer.ROTATE.execute(make_ctx(step_id="s"), params))
    assert len(failures) == 2 and result.cancelled_old
    assert cli.get_signing_profile(profileName=result.new_profile_name)["signingMaterial"] == {
        "certificateArn": CERT.replace("5555", "6666")
    }


def test_access_denied_is_permanent(
    aws_settings: StanchSettings, clients: Callable[[str], Any], make_ctx: Callable[..., ActionContext]
) -> None:
    _profile(clients("signer"))
    inject_fault(aws_settings.aws_endpoint_url or "", "*", service="signer", status=403, code="AccessDeniedException")
    with pytest.raises(PermanentActionError) as err:
        signer.ROTATE.execute(make_ctx(), {"account": ACCOUNT, "profile_name": "desktop_app"})
    assert "missing permission signer:GetSigningProfile" in str(err.value)


def test_profile_name_is_validated() -> None:
    with pytest.raises(ValueError):
        signer.ROTATE.validate_params({"account": ACCOUNT, "profile_name": "has-dash"})
