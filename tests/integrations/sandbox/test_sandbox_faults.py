"""The fault injector in front of moto: counts, protocols, control API."""

from __future__ import annotations

import io
import json

import pytest
from botocore.exceptions import ClientError

from integrations.aws.session import clear_client_cache, clients_for
from integrations.errors import TransientActionError
from integrations.sandbox.faults import (
    FaultRule,
    add_counter,
    clear_faults,
    identify,
    inject_fault,
    list_faults,
    request_target,
)
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


def test_the_ledger_tells_survived_faults_and_counts_side_effects_per_target(
    aws_settings: StanchSettings, aws_endpoint: str
) -> None:
    """What became of faulted calls is read back from the server: a throttled call retried to a
    success survived, one never retried did not; a 0 ms counter keeps successful calls per target
    (identifiers only: no secret value reaches it)."""
    clients = clients_for(aws_settings, ACCOUNT)
    iam = clients("iam")
    iam.create_user(UserName="u")
    k1, k2 = (iam.create_access_key(UserName="u")["AccessKey"]["AccessKeyId"] for _ in range(2))
    counter = add_counter(aws_endpoint, "UpdateAccessKey", service="iam", label="probe:x")
    secrets = add_counter(aws_endpoint, "CreateSecret", label="probe:x")
    throttle = inject_fault(aws_endpoint, "UpdateAccessKey", service="iam", code="Throttling", count=3)
    for _ in range(2):  # k1: throttled twice, then it goes through (a retry of the same call)
        with pytest.raises(ClientError):
            iam.update_access_key(UserName="u", AccessKeyId=k1, Status="Inactive")
    with pytest.raises(ClientError):  # k2: throttled once (the 3rd and last fault) ...
        iam.update_access_key(UserName="u", AccessKeyId=k2, Status="Inactive")
    iam.update_access_key(UserName="u", AccessKeyId=k1, Status="Inactive")  # ... and never retried
    iam.update_access_key(UserName="u", AccessKeyId=k1, Status="Inactive")  # a duplicate side effect
    clients("secretsmanager").create_secret(Name="app/key", SecretString="s3cr3t-value")
    rules = {r.id: r for r in list_faults(aws_endpoint)}
    assert (rules[throttle].fired, rules[throttle].retried, rules[throttle].survived) == (3, 2, 2)
    assert rules[counter].targets == {f"{ACCOUNT} UserName=u AccessKeyId={k1}": 2}
    assert rules[counter].fired == 5 and rules[counter].label == "probe:x"  # every attempt; 2 succeeded
    assert rules[secrets].targets == {f"{ACCOUNT} Name=app/key": 1}
    assert "s3cr3t" not in json.dumps([r.model_dump() for r in rules.values()])


def test_request_target_of_each_protocol() -> None:
    def env(body: bytes, ctype: str, path: str = "/", target: str | None = None) -> dict[str, object]:
        e: dict[str, object] = {"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
                                "CONTENT_TYPE": ctype, "PATH_INFO": path, "REQUEST_METHOD": "POST"}
        if target:
            e["HTTP_X_AMZ_TARGET"] = target
        return e

    e = env(b"Action=SendEmail&Source=a%40x&Destination.ToAddresses.member.2=c%40x&"
            b"Destination.ToAddresses.member.1=b%40x&Message.Body.Text.Data=hello", "application/x-www-form-urlencoded")
    assert identify(e)[1] == "SendEmail"
    assert request_target(e, "ses", "query") == "Source=a@x to=b@x,c@x"
    assert e["wsgi.input"].read().startswith(b"Action=SendEmail")  # type: ignore[attr-defined]
    e = env(json.dumps({"CertificateArn": "arn:c", "PrivateKey": "-----BEGIN"}).encode(), "application/x-amz-json-1.1",
            target="CertificateManager.ImportCertificate")
    assert request_target(e, "acm", "json") == "CertificateArn=arn:c"
    assert request_target(env(b"x" * 10, "application/octet-stream", "/bucket/release/latest.json"), "s3",
                          "rest-xml") == "bucket/release/latest.json"
