"""The fault injector in front of moto: counts, protocols, control API."""

from __future__ import annotations

import io

import pytest
from botocore.exceptions import ClientError

from integrations.aws.session import clear_client_cache, clients_for
from integrations.errors import TransientActionError
from integrations.sandbox.faults import FaultRule, clear_faults, identify, inject_fault, list_faults
from integrations.settings import StanchSettings

ACCOUNT = "111111111111"


def test_503_twice_then_success(aws_settings: StanchSettings, aws_endpoint: str) -> None:
    iam = clients_for(aws_settings, ACCOUNT)("iam")
    inject_fault(aws_endpoint, "ListUsers", status=503, code="ServiceUnavailable", count=2, retry_after=1)
    for _ in range(2):
        with pytest.raises(ClientError) as err:
            iam.list_users()
        assert err.value.response["Error"]["Code"] == "ServiceUnavailable"
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert err.value.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "1"
    assert iam.list_users()["Users"] == []
    [rule] = list_faults(aws_endpoint)
    assert rule.fired == 2 and rule.exhausted


def test_access_denied_for_one_operation_only(aws_settings: StanchSettings, aws_endpoint: str) -> None:
    iam = clients_for(aws_settings, ACCOUNT)("iam")
    iam.create_user(UserName="u")
    inject_fault(aws_endpoint, "UpdateAccessKey", service="iam", status=403, code="AccessDenied")
    key = iam.create_access_key(UserName="u")["AccessKey"]["AccessKeyId"]  # other ops unaffected
    for _ in range(2):  # no count: fires every time
        with pytest.raises(ClientError) as err:
            iam.update_access_key(UserName="u", AccessKeyId=key, Status="Inactive")
        assert err.value.response["Error"]["Code"] == "AccessDenied"
    clear_faults(aws_endpoint)
    iam.update_access_key(UserName="u", AccessKeyId=key, Status="Inactive")


def test_json_and_rest_xml_protocols(aws_settings: StanchSettings, aws_endpoint: str) -> None:
    clients = clients_for(aws_settings, ACCOUNT)
    inject_fault(aws_endpoint, "ListSecrets", status=400, code="ThrottlingException", count=1)
    with pytest.raises(ClientError) as err:
        clients("secretsmanager").list_secrets()
    assert err.value.response["Error"]["Code"] == "ThrottlingException"
    assert clients("secretsmanager").list_secrets()["SecretList"] == []

    clients("s3").create_bucket(Bucket="fault-test-bucket")
    inject_fault(aws_endpoint, "PutObject", service="s3", status=503, code="SlowDown", count=1)
    with pytest.raises(ClientError) as err:
        clients("s3").put_object(Bucket="fault-test-bucket", Key="k", Body=b"x")
    assert err.value.response["Error"]["Code"] == "SlowDown"
    clients("s3").put_object(Bucket="fault-test-bucket", Key="k", Body=b"x")


def test_rules_scoped_by_service_and_account(aws_settings: StanchSettings, aws_endpoint: str) -> None:
    clear_client_cache()
    inject_fault(aws_endpoint, "*", service="sts", status=500, code="InternalFailure", count=1)
    with pytest.raises(TransientActionError) as err:  # the AssumeRole itself failed
        clients_for(aws_settings, "333333333333")
    assert err.value.operation == "AssumeRole"
    clients_for(aws_settings, ACCOUNT)("iam").list_users()
    inject_fault(aws_endpoint, "ListUsers", account="333333333333", status=403, code="AccessDenied")
    clients_for(aws_settings, ACCOUNT)("iam").list_users()  # other account: unaffected
    with pytest.raises(ClientError):
        clients_for(aws_settings, "333333333333")("iam").list_users()


def test_rate_zero_never_fires_and_bad_rules_are_rejected(
    aws_settings: StanchSettings, aws_endpoint: str
) -> None:
    inject_fault(aws_endpoint, "ListUsers", rate=0.0)
    clients_for(aws_settings, ACCOUNT)("iam").list_users()
    with pytest.raises(ValueError, match="fault rule rejected"):
        inject_fault(aws_endpoint, "ListUsers", status=200)


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "expected"),
    [
        ("PUT", "/bucket/release/latest.json", "", {}, "PutObject"),
        ("PUT", "/bucket/k", "", {"HTTP_X_AMZ_COPY_SOURCE": "bucket/k?versionId=1"}, "CopyObject"),
        ("GET", "/bucket/k", "", {}, "GetObject"),
        ("GET", "/bucket", "versioning", {}, "GetBucketVersioning"),
        ("GET", "/bucket", "list-type=2", {}, "ListObjectsV2"),
        ("PUT", "/bucket", "", {}, "CreateBucket"),
    ],
)
def test_identify_s3(method: str, path: str, query: str, headers: dict[str, str], expected: str) -> None:
    auth = (
        "AWS4-HMAC-SHA256 Credential=AKID/20260331/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=x"
    )
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "HTTP_AUTHORIZATION": auth}
    environ.update(headers)
    assert identify(environ) == ("s3", expected, "rest-xml")


def test_identify_query_rewraps_body() -> None:
    body = b"Action=UpdateAccessKey&Version=2010-05-08&UserName=u"
    environ = {
        "CONTENT_TYPE": "application/x-www-form-urlencoded; charset=utf-8",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=A/20260331/us-east-1/iam/aws4_request, x",
    }
    assert identify(environ) == ("iam", "UpdateAccessKey", "query")
    assert environ["wsgi.input"].read() == body  # type: ignore[attr-defined]


def test_rule_model() -> None:
    rule = FaultRule(action="X", count=1)
    assert rule.matches(None, "X", None) and not rule.matches(None, "Y", None)
