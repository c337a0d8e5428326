"""Server-side fault injection in front of moto (a WSGI middleware), controlled over HTTP.

Owns: ``FaultRule`` (what to fail or slow down, how, how often), ``FaultInjector`` (the
middleware, with the ledger of what became of the calls a rule fired on) and the small HTTP
client helpers ``inject_fault`` / ``inject_latency`` / ``add_counter`` / ``clear_faults`` /
``list_faults``.

Control API (served by the middleware itself, never reaches moto):
- ``POST /_fault`` JSON ``{"service"?, "action", "status", "code", "count"|"rate", "retry_after"?,
  "message"?, "account"?, "delay_ms"?, "jitter_ms"?}`` -> ``{"id": ...}``. ``action`` is the API
  operation name (``UpdateAccessKey``) or ``*``. Without ``count`` or ``rate`` the rule fires forever.
- Latency: ``delay_ms`` (+ uniform ``0..jitter_ms``) sleeps in the server thread before the
  request goes on. With ``"status": null`` the rule only delays and moto answers normally; with a
  status it delays, then fails (a slow error). Every matching latency-only rule that fires adds its
  delay; the first matching error rule ends the evaluation. ``count``/``rate`` apply as for faults.
- ``GET /_fault`` -> the rules with how often each fired; ``DELETE /_fault`` clears them
  (``DELETE /_fault?id=...`` clears one).
- What became of the calls a rule fired on (so a drill can tell a fault that was survived from
  one that was not, read back from the server, not from the client's claims): ``retried`` — the
  same call (operation, account and target) came again afterwards; ``survived`` — the same call
  then got a successful (< 400) answer from moto (for a latency rule: the delayed call itself
  succeeded, or a retry of it did). With ``"by_target": true`` a rule also keeps ``targets``:
  successful calls per target, e.g. ``{"111111111111 UserName=ci AccessKeyId=AKIA…": 1}`` — a
  0 ms latency-only rule with it is a side-effect counter (``label`` names whose counter it is).
  The target is read from identifying request parameters only (user, key id, ARN, secret id,
  recipients, bucket/key — ``TARGET_PARAMS``), never from values such as a secret's body.
- Killing a process inside a side-effect window (tests only) is not a fault rule: see
  ``integrations.sandbox.killpoints`` (``/_killpoint``, in front of this middleware).

How a request is identified: the service from the SigV4 credential scope of ``Authorization``;
the operation from ``X-Amz-Target`` (JSON protocol), the form body's ``Action=`` (query
protocol; the body is re-wrapped so moto can read it again), or, for S3, from method + path +
sub-resource (path-style URLs only). The error body is protocol-correct: JSON ``__type``, query
``ErrorResponse``, REST-XML ``Error`` (S3), REST-JSON with ``x-amzn-ErrorType``.

Must not touch: ``flows``, ``prefect``.
"""

from __future__ import annotations

import io
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import urllib3
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["TARGET_PARAMS", "FaultInjector", "FaultRule", "add_counter", "clear_faults", "inject_fault",
           "inject_latency", "list_faults", "request_target"]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_QUERY_SERVICES = {
    "iam",
    "sts",
    "ses",
    "sns",
    "ec2",
    "cloudformation",
    "rds",
    "elasticloadbalancing",
    "autoscaling",
    "cloudwatch",
    "sdb",
    "redshift",
    "elasticache",
}
_REST_XML_SERVICES = {"s3", "route53", "cloudfront"}
_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class FaultRule(BaseModel):
    """Fail (``status``/``code``) and/or delay (``delay_ms`` ± ``jitter_ms``) matching requests.

    It fires on the first ``count`` matching requests, on a ``rate`` share of them, or (neither
    given) on all. ``status=None`` makes a latency-only rule: the request is delayed, not failed.
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    service: str | None = Field(default=None, description="SigV4 service name, e.g. iam, s3, secretsmanager")
    action: str = Field(description="API operation, e.g. UpdateAccessKey; '*' matches any")
    status: int | None = Field(default=400, ge=400, le=599, description="None: delay only, no error")
    code: str = "Throttling"
    message: str = "Injected fault (stanch sandbox)"
    count: int | None = Field(default=None, ge=1)
    rate: float | None = Field(default=None, ge=0.0, le=1.0)
    retry_after: float | None = Field(default=None, ge=0)
    account: str | None = Field(default=None, description="Only requests pinned to this account")
    delay_ms: float | None = Field(default=None, ge=0, le=600_000, description="Sleep before answering")
    jitter_ms: float = Field(default=0.0, ge=0, le=600_000, description="Extra uniform 0..jitter_ms")
    label: str | None = Field(default=None, max_length=200, description="Who added it (e.g. a probe's counter)")
    by_target: bool = Field(default=False, description="Keep ``targets``: successful calls per target")
    fired: int = 0
    retried: int = Field(default=0, description="Calls it fired on that came again afterwards")
    survived: int = Field(default=0, description="Calls it fired on that then succeeded (themselves or a retry)")
    targets: dict[str, int] = Field(default_factory=dict, description="by_target: successful calls per target")

    @model_validator(mode="after")
    def _does_something(self) -> FaultRule:
        if self.status is None and self.delay_ms is None:
            raise ValueError("a rule needs a status (fault), a delay_ms (latency), or both")
        if self.jitter_ms and self.delay_ms is None:
            raise ValueError("jitter_ms needs delay_ms")
        return self

    @property
    def is_latency_only(self) -> bool:
        return self.status is None

    def matches(self, service: str | None, action: str | None, account: str | None) -> bool:
        if self.service and self.service != service:
            return False
        if self.account and self.account != account:
            return False
        return self.action == "*" or self.action == action

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.fired >= self.count


def _service_from_auth(environ: dict[str, Any]) -> str | None:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    marker = "Credential="
    if marker not in auth:
        return None
    scope = auth.split(marker, 1)[1].split(",", 1)[0].split("/")
    return scope[3] if len(scope) >= 5 else None


def _s3_action(environ: dict[str, Any]) -> str:
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO", "/").lstrip("/")
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    has_key = "/" in path and path.split("/", 1)[1] != ""
    if has_key:
        if method == "PUT":
            return "CopyObject" if environ.get("HTTP_X_AMZ_COPY_SOURCE") else "PutObject"
        return {"GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(method, method)
    if not path:
        return "ListBuckets"
    if "versioning" in query:
        return "PutBucketVersioning" if method == "PUT" else "GetBucketVersioning"
    if "versions" in query:
        return "ListObjectVersions"
    if "tagging" in query:
        return "PutBucketTagging" if method == "PUT" else "GetBucketTagging"
    return {
        "GET": "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects",
        "PUT": "CreateBucket",
        "HEAD": "HeadBucket",
        "DELETE": "DeleteBucket",
    }.get(method, method)


def identify(environ: dict[str, Any]) -> tuple[str | None, str | None, str]:
    """(service, action, protocol) of a request; re-wraps a consumed form body."""
    service = _service_from_auth(environ)
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return service, target.rsplit(".", 1)[-1], "json"
    ctype = environ.get("CONTENT_TYPE", "")
    if ctype.startswith("application/x-www-form-urlencoded"):
        body = rewrap_body(environ)
        action = parse_qs(body.decode("utf-8", "replace")).get("Action", [None])[0]
        if action is None:
            action = parse_qs(environ.get("QUERY_STRING", "")).get("Action", [None])[0]
        return service, action, "query"
    if service in _REST_XML_SERVICES:
        return service, _s3_action(environ) if service == "s3" else None, "rest-xml"
    query_action = parse_qs(environ.get("QUERY_STRING", "")).get("Action", [None])[0]
    if query_action:
        return service, query_action, "query"
    return service, None, "rest-json"


#: request parameters that say what a call acts on (query-protocol form fields and JSON body keys);
#: only these reach ``targets`` — never a message body, a secret value or a key's material
TARGET_PARAMS = ("UserName", "AccessKeyId", "RoleName", "GroupName", "PolicyArn", "ServerCertificateName",
                 "CertificateArn", "SecretId", "Name", "KeyId", "FunctionName", "TopicArn", "Source",
                 "ProfileName", "ClusterName", "ServiceName", "Destination.ToAddresses.member")
_MAX_JSON_BODY = 1 << 20


def rewrap_body(environ: dict[str, Any]) -> bytes:
    """The raw request body; the WSGI stream is re-wrapped so the app behind can read it again."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return bytes(body)


def request_target(environ: dict[str, Any], service: str | None, protocol: str) -> str:
    """What a call acts on, for counting and for telling a retry of it: the identifying parameters
    of ``TARGET_PARAMS`` (``UserName=ci AccessKeyId=AKIA…``; e-mail recipients as ``to=a,b``), for
    S3 ``bucket/key`` from the path. Empty when nothing identifies it. Re-wraps a body it reads."""
    if protocol == "rest-xml" or protocol == "rest-json":
        return str(environ.get("PATH_INFO", "/")).lstrip("/")
    params: dict[str, Any] = {}
    if protocol == "query":
        raw = rewrap_body(environ) if str(environ.get("CONTENT_TYPE", "")).startswith(
            "application/x-www-form-urlencoded") else b""
        form = parse_qs(raw.decode("utf-8", "replace")) or parse_qs(environ.get("QUERY_STRING", ""))
        params = {k: v[0] for k, v in form.items()}
    elif protocol == "json":
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if 0 < length <= _MAX_JSON_BODY:
            try:
                loaded = json.loads(rewrap_body(environ) or b"{}")
            except ValueError:
                loaded = {}
            params = loaded if isinstance(loaded, dict) else {}
    parts: list[str] = []
    recipients: list[str] = []
    for key in TARGET_PARAMS:
        if key.endswith(".member"):
            recipients = [str(v) for k, v in sorted(params.items(), key=lambda kv: kv[0])
                          if k.startswith(key + ".")]
        elif isinstance(params.get(key), str | int):
            parts.append(f"{key}={params[key]}")
    if recipients:
        parts.append("to=" + ",".join(sorted(recipients)))
    return " ".join(parts)


def error_response(rule: FaultRule, protocol: str) -> tuple[str, list[tuple[str, str]], bytes]:
    """(status line, headers, body) of the injected error in the request's protocol."""
    assert rule.status is not None, "latency-only rules never answer with an error"
    request_id = str(uuid.uuid4())
    if protocol in {"json", "rest-json"}:
        body = json.dumps({"__type": rule.code, "message": rule.message}).encode()
        ctype = "application/x-amz-json-1.1"
    elif protocol == "rest-xml":
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{escape(rule.code)}</Code>'
            f"<Message>{escape(rule.message)}</Message><RequestId>{request_id}</RequestId></Error>"
        ).encode()
        ctype = "application/xml"
    else:
        kind = "Receiver" if rule.status >= 500 else "Sender"
        body = (
            f"<ErrorResponse><Error><Type>{kind}</Type><Code>{escape(rule.code)}</Code>"
            f"<Message>{escape(rule.message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        ctype = "text/xml"
    headers = [
        ("Content-Type", ctype),
        ("Content-Length", str(len(body))),
        ("x-amzn-RequestId", request_id),
        ("x-amz-request-id", request_id),
        ("x-amzn-ErrorType", rule.code),
    ]
    if rule.retry_after is not None:
        headers.append(("Retry-After", f"{rule.retry_after:g}"))
    return f"{rule.status} {_REASONS.get(rule.status, 'Error')}", headers, body


class FaultInjector:
    """WSGI middleware: answers ``/_fault`` itself and fails requests matching a rule."""

    def __init__(self, app: WSGIApp, *, rng: random.Random | None = None) -> None:
        self.app = app
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        # call -> [rule id, retried yet] for each time a rule fired on it and no success came yet
        self._pending: dict[tuple[str | None, str | None, str | None, str], list[list[Any]]] = {}
        # STANCH_SANDBOX_FAULT_SEED makes ``rate`` rules repeatable: the draws come in a fixed order,
        # and a throttled call's retry is one more draw, so the same calls give the same faults
        seed = os.environ.get("STANCH_SANDBOX_FAULT_SEED")
        self._rng = rng or (random.Random(int(seed)) if seed and seed.isdigit() else random.Random())

    # -- rules -------------------------------------------------------------------------------
    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self, rule_id: str | None = None) -> None:
        with self._lock:
            self._rules = [r for r in self._rules if rule_id is not None and r.id != rule_id]
            if rule_id is None:
                self._pending.clear()

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return [r.model_copy() for r in self._rules]

    def _take(
        self, service: str | None, action: str | None, account: str | None
    ) -> tuple[float, FaultRule | None]:
        """(seconds to sleep, error rule to answer with) for one request; counts what fired."""
        delay, rule, _ = self._decide(service, action, account, "")
        return delay, rule

    def _decide(
        self, service: str | None, action: str | None, account: str | None, target: str
    ) -> tuple[float, FaultRule | None, list[FaultRule]]:
        """``_take`` plus the ledger: this call is a retry of the earlier calls of the same
        (service, operation, account, target) that a rule fired on; every rule that fires now is
        waiting for this call's success. Returns the rules that fired (for ``_settle``)."""
        delay = 0.0
        fired: list[FaultRule] = []
        key = (service, action, account, target)
        with self._lock:
            by_id = {r.id: r for r in self._rules}
            for entry in self._pending.get(key, []):
                if not entry[1] and entry[0] in by_id:
                    entry[1] = True
                    by_id[entry[0]].retried += 1
            error: FaultRule | None = None
            for rule in self._rules:
                if rule.exhausted or not rule.matches(service, action, account):
                    continue
                if rule.rate is not None and self._rng.random() >= rule.rate:
                    continue
                rule.fired += 1
                fired.append(rule)
                if rule.delay_ms is not None:
                    jitter = self._rng.uniform(0.0, rule.jitter_ms) if rule.jitter_ms else 0.0
                    delay += (rule.delay_ms + jitter) / 1000.0
                if not rule.is_latency_only:
                    error = rule
                    break
            if fired:
                self._pending.setdefault(key, []).extend([r.id, False] for r in fired)
        return delay, (error.model_copy() if error is not None else None), fired

    def _settle(self, key: tuple[str | None, str | None, str | None, str], ok: bool,
                fired: list[FaultRule]) -> None:
        """moto answered the call ``key``: on success every rule that fired on it (now or on an
        earlier attempt) survived, and ``by_target`` rules that fired now count it."""
        if not ok:
            return
        with self._lock:
            by_id = {r.id: r for r in self._rules}
            for rule_id, _ in self._pending.pop(key, []):
                if rule_id in by_id:
                    by_id[rule_id].survived += 1
            shown = " ".join(p for p in (key[2], key[3]) if p)
            for rule in fired:
                if rule.by_target:
                    rule.targets[shown] = rule.targets.get(shown, 0) + 1

    # -- WSGI --------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") == "/_fault":
            return self._control(environ, start_response)
        if self._rules:
            service, action, protocol = identify(environ)
            account = environ.get("HTTP_X_MOTO_ACCOUNT_ID")
            key = (service, action, account, request_target(environ, service, protocol))
            delay, rule, fired = self._decide(*key)
            if delay > 0:
                time.sleep(delay)  # the server is threaded: only this request waits
            if rule is not None:
                status, headers, body = error_response(rule, protocol)
                start_response(status, headers)
                return [body]

            def answered(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                self._settle(key, int(status.split()[0]) < 400, fired)
                return start_response(status, headers, exc_info)

            return self.app(environ, answered)
        return self.app(environ, start_response)

    def _control(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        status: str = "200 OK"
        payload: dict[str, Any] = {}
        if method == "POST":
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
                raw = environ["wsgi.input"].read(length) if length else b"{}"
                rule = self.add(FaultRule.model_validate(json.loads(raw or b"{}")))
                payload = {"id": rule.id}
            except ValueError as exc:  # JSON or validation error
                status, payload = "400 Bad Request", {"error": str(exc)}
        elif method == "DELETE":
            rule_id = parse_qs(environ.get("QUERY_STRING", "")).get("id", [None])[0]
            self.clear(rule_id)
            payload = {"cleared": rule_id or "all"}
        else:
            payload = {"rules": [r.model_dump() for r in self.rules()]}
        body = json.dumps(payload).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


_http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=10))


def inject_fault(
    endpoint: str,
    action: str,
    *,
    status: int | None = 400,
    code: str = "Throttling",
    count: int | None = None,
    rate: float | None = None,
    service: str | None = None,
    retry_after: float | None = None,
    account: str | None = None,
    message: str | None = None,
    delay_ms: float | None = None,
    jitter_ms: float = 0.0,
) -> str:
    """Add a rule on a running sandbox; returns the rule id.

    ``status=None`` with ``delay_ms`` adds a latency-only rule (see ``inject_latency``).
    """
    rule: dict[str, Any] = {
        "action": action,
        "status": status,
        "code": code,
        "count": count,
        "rate": rate,
        "service": service,
        "retry_after": retry_after,
        "account": account,
    }
    if delay_ms is not None:
        rule["delay_ms"] = delay_ms
    if jitter_ms:
        rule["jitter_ms"] = jitter_ms
    if message:
        rule["message"] = message
    resp = _http.request(
        "POST",
        f"{endpoint.rstrip('/')}/_fault",
        body=json.dumps(rule).encode(),
        headers={"Content-Type": "application/json"},
    )
    if resp.status != 200:
        raise ValueError(f"fault rule rejected: {resp.data.decode()}")
    return str(json.loads(resp.data)["id"])


def inject_latency(
    endpoint: str,
    action: str = "*",
    *,
    delay_ms: float,
    jitter_ms: float = 0.0,
    service: str | None = None,
    account: str | None = None,
    count: int | None = None,
    rate: float | None = None,
) -> str:
    """Delay matching requests by ``delay_ms`` + uniform(0, ``jitter_ms``) without failing them.

    Real AWS round trips are tens of milliseconds; moto answers in a few. Benchmarks and drills
    use this so that concurrency and timeouts behave as they would against AWS.
    """
    return inject_fault(
        endpoint,
        action,
        status=None,
        count=count,
        rate=rate,
        service=service,
        account=account,
        delay_ms=delay_ms,
        jitter_ms=jitter_ms,
    )


def add_counter(endpoint: str, action: str, *, service: str | None = None, label: str | None = None) -> str:
    """A side-effect counter: a 0 ms latency-only rule on ``action`` that keeps ``targets``
    (successful calls per account and target); nothing is delayed or failed. Returns its id."""
    rule: dict[str, Any] = {"action": action, "service": service, "status": None, "delay_ms": 0,
                            "by_target": True, "label": label}
    resp = _http.request("POST", f"{endpoint.rstrip('/')}/_fault", body=json.dumps(rule).encode(),
                         headers={"Content-Type": "application/json"})
    if resp.status != 200:
        raise ValueError(f"counter rule rejected: {resp.data.decode()}")
    return str(json.loads(resp.data)["id"])


def clear_faults(endpoint: str, rule_id: str | None = None) -> None:
    url = f"{endpoint.rstrip('/')}/_fault" + (f"?id={rule_id}" if rule_id else "")
    _http.request("DELETE", url)


def list_faults(endpoint: str) -> list[FaultRule]:
    resp = _http.request("GET", f"{endpoint.rstrip('/')}/_fault")
    return [FaultRule.model_validate(r) for r in json.loads(resp.data)["rules"]]
