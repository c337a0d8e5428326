"""Two Slack app replicas on the PostgreSQL store agree on what they already started: the same
delivery claimed by both starts once, across processes' stores, until its TTL runs out."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from flows.entrypoints.slack.commands import SeenSet
from flows.store.postgres import PostgresStore


def test_two_replicas_claim_a_delivery_once(pg_url: str) -> None:
    replicas = [SeenSet(shared=PostgresStore(pg_url), ttl=60) for _ in range(2)]  # two apps, two connections
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda i: replicas[i % 2].claim("slack-delivery-1"), range(16)))
    assert won.count(True) == 1
    assert "slack-delivery-1" in replicas[0] and "slack-delivery-1" in replicas[1]
    assert "slack-delivery-2" not in replicas[0]


def test_a_claim_expires_after_its_ttl(pg_url: str) -> None:
    # 1.5 s, not 0.2 s: on a loaded box two back-to-back claims were once > 0.2 s apart (a flake)
    short = SeenSet(shared=PostgresStore(pg_url), ttl=1.5)
    assert short.claim("slack-delivery-ttl") and not short.claim("slack-delivery-ttl")
    time.sleep(1.6)
    assert short.claim("slack-delivery-ttl")  # Slack's retry window is long past: a new delivery
