"""api-key-exposure at scale: rotate N tenants' API keys and notify each tenant once.

Seeds the ``tenants`` sandbox fleet (moto + Slack stand-in, in this process), adds tenants up to
``--tenants`` (each: a tagged Secrets Manager key, an SNS topic), then runs
``runbooks/api-key-exposure.yaml`` through the real engine under ``prefect_test_harness`` (server
start-up excluded from the clock) and checks in moto that every key was rotated and every tenant got
exactly one e-mail and one SNS notice naming only itself. Prints wall time and per-tenant cost.

    .venv/bin/python bench/api_key_exposure.py [--tenants 1000]

Owns: nothing but this measurement. Must not touch: real AWS (loopback moto only), real Slack.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

RUNBOOK = Path(__file__).resolve().parents[1] / "runbooks" / "api-key-exposure.yaml"
ACCOUNT = "111111111111"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tenants", type=int, default=1000)
    args = ap.parse_args()

    from prefect.settings import temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    from flows.engine.runtime import run_runbook
    from integrations.aws.session import clients_for
    from integrations.base import default_registry
    from integrations.sandbox import Sandbox, observe
    from integrations.sandbox.fleet_library import TENANT_SENDER
    from integrations.sandbox.state import default_slack_factory
    from integrations.settings import StanchSettings

    default_registry()
    with tempfile.TemporaryDirectory(prefix="stanch-bench-") as tmp, \
            Sandbox(Path(tmp) / "sb", slack_factory=default_slack_factory, fleet_variant="tenants") as sb:
        assert sb.state is not None and sb.fleet is not None
        os.environ.update(sb.state.environment())
        os.environ.update({"STANCH_HOME": str(Path(tmp) / "home"), "STANCH_OSV_API_URL": "",
                           "STANCH_NPM_REGISTRY_URL": "", "STANCH_PYPI_URL": ""})
        web = clients_for(StanchSettings(aws_endpoint_url=sb.url), ACCOUNT, "us-east-1")
        sm, sns = web("secretsmanager"), web("sns")
        t0 = time.perf_counter()
        topics = {t.tenant: t.topic_arn for t in sb.fleet.tenants.values()}
        for i in range(len(topics), args.tenants):
            t = f"tenant{i:05d}"
            topics[t] = sns.create_topic(Name=f"tenant-{t}-security")["TopicArn"]
            sm.create_secret(Name=f"tenants/{t}/api-key", SecretString=f"seed-{i}-" + "x" * 20,
                             Tags=[{"Key": "tenant", "Value": t},
                                   {"Key": "tenant-contact", "Value": f"sec@{t}.example"},
                                   {"Key": "tenant-topic", "Value": topics[t]}])
        print(f"seeded {len(topics)} tenants in {time.perf_counter() - t0:.1f} s", flush=True)
        t_srv = time.perf_counter()
        with prefect_test_harness(server_startup_timeout=60), \
                temporary_settings(updates={"flows.heartbeat_frequency": None}):
            print(f"Prefect server up in {time.perf_counter() - t_srv:.1f} s (excluded)", flush=True)
            t1 = time.perf_counter()
            state = run_runbook(str(RUNBOOK), {"account": ACCOUNT, "tenants": [], "sender": TENANT_SENDER},
                                "INC-BENCH-API", str(Path(tmp) / "store"), True, "bench", return_state=True)
            wall = time.perf_counter() - t1
        emails = observe.sent_emails(sb.url)
        per_topic = {t: len(observe.sns_notifications(ACCOUNT, arn)) for t, arn in topics.items()}
        ok = (state.is_completed() and len(emails) == len(topics) and set(per_topic.values()) == {1}
              and len({m.to[0] for m in emails}) == len(topics))
        print(f"run {'completed' if state.is_completed() else 'FAILED'}: {len(topics)} tenants rotated and "
              f"notified in {wall:.1f} s ({wall / len(topics) * 1000:.0f} ms per tenant); "
              f"{len(emails)} e-mails, SNS notices per topic {sorted(set(per_topic.values()))} -> "
              f"{'PASS' if ok else 'MISS'}", flush=True)


if __name__ == "__main__":
    main()
