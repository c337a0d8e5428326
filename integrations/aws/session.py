"""boto3 clients for one AWS account, obtained by assuming the incident-responder role.

Owns: how stanch authenticates to an account (STS ``AssumeRole`` into
``arn:aws:iam::<account>:role/<settings.assume_role_name>`` with the ambient credentials),
the botocore configuration every client uses (botocore's standard retry mode with
``STANCH_AWS_MAX_ATTEMPTS`` attempts per call — throttling and 5xx, jittered backoff — and the
engine's step retries of ``TransientActionError`` on top; STS AssumeRole gets one attempt;
bounded timeouts, ``max_pool_connections=32``), the
``endpoint_url`` override for the sandbox, and a thread-safe cache of one refreshable session per
(endpoint, role, account).

Sandbox detail: moto maps an access key to its account through in-memory STS state, which
``/moto-api/reset`` wipes. For loopback endpoints only, every request additionally carries
``x-moto-account-id: <account>`` so a cached session keeps hitting the right account after a
reset. Real AWS never sees that header.

Must not touch: ``flows``, ``prefect``.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.credentials import RefreshableCredentials
from botocore.loaders import create_loader
from botocore.session import Session as BotocoreSession
from botocore.session import get_session

from integrations.aws.errors import aws_call
from integrations.base import ActionContext
from integrations.errors import DrillSafetyError
from integrations.settings import StanchSettings
from integrations.urls import is_loopback

__all__ = [
    "CLIENT_CONFIG",
    "AccountClients",
    "clear_client_cache",
    "clients_for",
    "is_loopback_endpoint",
    "role_arn",
]

CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 1},
    max_pool_connections=32,
    connect_timeout=5,
    read_timeout=30,
    tcp_keepalive=True,
)
"""One attempt per call (used for STS): the engine retries the step on TransientActionError."""


def client_config(max_attempts: int) -> Config:
    """Per-call retries inside botocore (standard mode: throttling/5xx, jittered backoff), then
    the engine's step retries on top. ``STANCH_AWS_MAX_ATTEMPTS=1`` leaves all retrying to the engine."""
    return CLIENT_CONFIG.merge(Config(retries={"mode": "standard", "total_max_attempts": max(1, max_attempts)}))


_SESSION_SECONDS = 3600


is_loopback_endpoint = is_loopback  # the name callers know; one definition in integrations.urls

def role_arn(account: str, role_name: str) -> str:
    return f"arn:aws:iam::{account}:role/{role_name}"


class AccountClients:
    """Clients for one account: ``clients("iam")`` or ``clients.client("s3", region)``.

    Thread-safe; clients are created once per (service, region) and shared (botocore clients are
    thread-safe, creating them is not cheap).
    """

    def __init__(self, session: boto3.Session, account: str, region: str, endpoint_url: str | None,
                 config: Config = CLIENT_CONFIG) -> None:
        self.session = session
        self.config = config
        self.account = account
        self.region = region
        self.endpoint_url = endpoint_url
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str, region: str | None = None) -> Any:
        reg = region or self.region
        key = (service, reg)
        found = self._clients.get(key)  # clients are thread-safe and never replaced: no lock to read
        if found is not None:
            return found
        with self._lock:
            cli = self._clients.get(key)
            if cli is None:
                cli = self.session.client(  # type: ignore[call-overload]
                    service, region_name=reg, endpoint_url=self.endpoint_url, config=self.config
                )
                if is_loopback_endpoint(self.endpoint_url):
                    _pin_moto_account(cli, self.account)
                self._clients[key] = cli
            return cli

    def __call__(self, service: str, region: str | None = None) -> Any:
        return self.client(service, region)


def _pin_moto_account(client: Any, account: str) -> None:
    def add_header(request: Any, **_: Any) -> None:
        request.headers["x-moto-account-id"] = account

    client.meta.events.register("before-sign.*.*", add_header)


_cache: dict[tuple[str | None, str, str], boto3.Session] = {}
_cache_lock = threading.Lock()
_account_clients: dict[tuple[str | None, str, str, str, int], AccountClients] = {}


def clear_client_cache() -> None:
    """Forget every cached session and client (tests call this after resetting the sandbox)."""
    with _cache_lock:
        _cache.clear()
        _account_clients.clear()
        _sts_clients.clear()


def _settings_of(ctx_or_settings: ActionContext | StanchSettings) -> tuple[StanchSettings, bool]:
    if isinstance(ctx_or_settings, ActionContext):
        return ctx_or_settings.settings, ctx_or_settings.drill
    return ctx_or_settings, False


_LOADER = create_loader()
"""One botocore data loader for every session: loading service models is the costly part of a
new session (~100 ms of CPU each), and the models never change in a process."""
_sts_clients: dict[tuple[str | None, str], Any] = {}


_template: Any = None
_template_lock = threading.Lock()


def _botocore_session() -> Any:
    """A fresh botocore session (its own credentials) sharing the data loader, whose event hooks
    are a copy of a template's: registering botocore's ~2,700 built-in handlers costs ~15 ms of CPU
    per session (they are module-level functions, the same for every session), copying them ~2 ms."""
    global _template
    with _template_lock:
        if _template is None:
            _template = get_session()
            _template.register_component("data_loader", _LOADER)
        hooks = copy.copy(_template._original_handler)
    session = BotocoreSession(event_hooks=hooks, include_builtin_handlers=False)
    session.register_component("data_loader", _LOADER)
    return session


def _sts_client(endpoint_url: str | None, region: str) -> Any:
    """The caller's own STS client (one per endpoint/region; clients are thread-safe)."""
    key = (endpoint_url, region)
    with _cache_lock:
        found = _sts_clients.get(key)
    if found is not None:
        return found
    base = boto3.Session(botocore_session=_botocore_session(), region_name=region)
    if base.get_credentials() is None and is_loopback_endpoint(endpoint_url):
        # The sandbox accepts any credentials; spare the operator from exporting fake ones.
        base = boto3.Session(botocore_session=_botocore_session(), region_name=region,
                             aws_access_key_id="sandbox", aws_secret_access_key="sandbox")
    made = base.client("sts", region_name=region, endpoint_url=endpoint_url, config=CLIENT_CONFIG)
    with _cache_lock:
        return _sts_clients.setdefault(key, made)


def _assume_role_refresher(
    endpoint_url: str | None, region: str, arn: str, session_name: str
) -> Callable[[], dict[str, str]]:
    def refresh() -> dict[str, str]:
        sts = _sts_client(endpoint_url, region)
        with aws_call("sts", "AssumeRole"):
            resp = sts.assume_role(
                RoleArn=arn, RoleSessionName=session_name, DurationSeconds=_SESSION_SECONDS
            )
        creds = resp["Credentials"]
        expiry = creds["Expiration"]
        if isinstance(expiry, datetime) and expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=UTC)
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": expiry.isoformat() if isinstance(expiry, datetime) else str(expiry),
        }

    return refresh


_inflight: dict[tuple[str | None, str, str], threading.Lock] = {}


def _session_for(settings: StanchSettings, account: str, region: str) -> boto3.Session:
    key = (settings.aws_endpoint_url, settings.assume_role_name, account)
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None:
            return cached
        gate = _inflight.setdefault(key, threading.Lock())
    with gate:  # one AssumeRole per account, however many items of it start at once
        with _cache_lock:
            cached = _cache.get(key)
        if cached is not None:
            return cached
        return _new_session(settings, account, region, key)


def _new_session(settings: StanchSettings, account: str, region: str,
                 key: tuple[str | None, str, str]) -> boto3.Session:
    refresh = _assume_role_refresher(
        settings.aws_endpoint_url, region, role_arn(account, settings.assume_role_name), "stanch"
    )
    creds = RefreshableCredentials.create_from_metadata(
        metadata=refresh(), refresh_using=refresh, method="sts-assume-role"
    )
    botocore_session = _botocore_session()
    botocore_session._credentials = creds
    session = boto3.Session(botocore_session=botocore_session, region_name=region)
    with _cache_lock:
        return _cache.setdefault(key, session)


def clients_for(
    ctx_or_settings: ActionContext | StanchSettings, account: str, region: str | None = None
) -> AccountClients:
    """Clients acting as the responder role in ``account``.

    The first call per account performs ``sts:AssumeRole`` (and raises Transient/Permanent
    ActionError if that fails); later calls reuse the cached, auto-refreshing session.
    In drill mode only loopback (sandbox) endpoints are allowed.
    """
    settings, drill = _settings_of(ctx_or_settings)
    endpoint = settings.aws_endpoint_url
    if drill and not is_loopback_endpoint(endpoint):
        raise DrillSafetyError(
            f"drill refused to call AWS at {endpoint or 'the real AWS endpoints'}: "
            "drills may only use a sandbox endpoint (STANCH_AWS_ENDPOINT_URL=http://127.0.0.1:…)"
        )
    reg = region or settings.aws_region
    key = (endpoint, settings.assume_role_name, account, reg, settings.aws_max_attempts)
    found = _account_clients.get(key)  # a dict read is atomic; writes happen under the lock
    if found is not None:
        return found
    session = _session_for(settings, account, reg)
    made = AccountClients(session, account, reg, endpoint, client_config(settings.aws_max_attempts))
    with _cache_lock:
        return _account_clients.setdefault(key, made)
