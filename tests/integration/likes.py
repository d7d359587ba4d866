"""Test data: a generated like stream and an independent from-scratch computation of views."""

from __future__ import annotations

import random
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer

from logstream.codec import Codec

DAY_MS = 86_400_000
SIZES = {"1m": 60_000, "1h": 3_600_000, "1d": DAY_MS}
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def generate_likes(
    n: int,
    *,
    seed: int = 7,
    days: int = 4,
    urls: int = 300,
    users: int = 2000,
    late_fraction: float = 0.1,
) -> list[dict[str, Any]]:
    """Skewed URLs (Zipf-like), many users, timestamps mostly rising with jitter (out of
    order) and a fraction of late events up to two days old."""
    rng = random.Random(seed)
    span = days * DAY_MS
    weights = [1 / (rank + 1) for rank in range(urls)]
    url_names = [f"https://example.com/{rank}" for rank in range(urls)]
    events = []
    for i in range(n):
        t = BASE_MS + int(span * i / n) + rng.randint(-120_000, 120_000)
        if rng.random() < late_fraction:
            t -= rng.randint(3_600_000, 2 * DAY_MS)
        events.append(
            {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "url": rng.choices(url_names, weights)[0],
                "user_id": f"user-{rng.randrange(users)}",
                "occurred_at": max(t, BASE_MS - 2 * DAY_MS),
            }
        )
    return events


def produce_likes(bootstrap: str, topic: str, events: list[dict[str, Any]], codec: Codec) -> None:
    """Write events exactly as ingest does: key=url, timestamp=occurred_at, acks=all."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 10}
    )
    failures: list[str] = []
    for event in events:
        producer.produce(
            topic,
            key=event["url"].encode(),
            value=codec.encode("like", event),
            timestamp=event["occurred_at"],
            on_delivery=lambda err, _m: failures.append(str(err)) if err else None,
        )
        producer.poll(0)
    assert producer.flush(60) == 0
    assert failures == []


@dataclass
class Expected:
    """The views, computed from scratch over a list of events."""

    url: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    user: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    windows: dict[tuple[str, str], Counter[int]] = field(default_factory=dict)


def expected_views(events: list[dict[str, Any]]) -> Expected:
    def per(key: str) -> dict[str, tuple[int, int, int]]:
        acc: dict[str, list[int]] = {}
        for e in events:
            c = acc.setdefault(e[key], [0, e["occurred_at"], e["occurred_at"]])
            c[0] += 1
            c[1] = min(c[1], e["occurred_at"])
            c[2] = max(c[2], e["occurred_at"])
        return {k: (v[0], v[1], v[2]) for k, v in acc.items()}

    windows: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)
    for e in events:
        for size, ms in SIZES.items():
            start = e["occurred_at"] // ms * ms
            windows[(size, e["url"])][start] += 1
            windows[(size, "")][start] += 1
    return Expected(per("url"), per("user_id"), dict(windows))


def assert_views_match(stores: dict[str, Any], expected: Expected) -> None:
    """Compare every key of every view with the expectation (and nothing extra)."""
    url_store, user_store, window_store = (
        stores["likes-by-url"],
        stores["likes-by-user"],
        stores["likes-by-window"],
    )
    got_url = {row[1]: (row[2], row[3], row[4]) for row in url_store.totals_rows("url")}
    assert got_url == expected.url
    users = {row[1] for row in user_store.bucket_rows("user")}
    assert users == set(expected.user)
    for user, (count, first, last) in expected.user.items():
        total = user_store.total("user", user)
        assert (total.count, total.first_ms, total.last_ms) == (count, first, last), user
    lo, hi = BASE_MS - 10 * DAY_MS, BASE_MS + 30 * DAY_MS
    for (size, key), counts in expected.windows.items():
        got = dict(window_store.windows("w", key, SIZES[size], lo, hi, 100_000))
        assert got == dict(counts), (size, key)
