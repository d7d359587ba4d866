"""Test data: a generated like stream and an independent from-scratch computation of views."""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from consumers.likes_by_window import cell
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
        while True:
            try:
                producer.produce(
                    topic,
                    key=event["url"].encode(),
                    value=codec.encode("like", event),
                    timestamp=event["occurred_at"],
                    on_delivery=lambda err, _m: failures.append(str(err)) if err else None,
                )
                break
            except BufferError:  # the local queue is full (a slow broker): let it drain
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert failures == []


@dataclass
class Expected:
    """The views, computed from scratch over a list of events."""

    url: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    user: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    # (size, url) -> window start -> count; url None: the total over all URLs
    windows: dict[tuple[str, str | None], Counter[int]] = field(default_factory=dict)


def expected_views(events: list[dict[str, Any]]) -> Expected:
    def per(key: str) -> dict[str, tuple[int, int, int]]:
        acc: dict[str, list[int]] = {}
        for e in events:
            c = acc.setdefault(e[key], [0, e["occurred_at"], e["occurred_at"]])
            c[0] += 1
            c[1] = min(c[1], e["occurred_at"])
            c[2] = max(c[2], e["occurred_at"])
        return {k: (v[0], v[1], v[2]) for k, v in acc.items()}

    windows: dict[tuple[str, str | None], Counter[int]] = defaultdict(Counter)
    for e in events:
        for size, ms in SIZES.items():
            start = e["occurred_at"] // ms * ms
            windows[(size, e["url"])][start] += 1
            windows[(size, None)][start] += 1  # the total over all URLs
    return Expected(per("url"), per("user_id"), dict(windows))


def read_log(
    bootstrap: str, topic: str, codec: Codec, partitions: int, *, timeout_s: float = 120.0
) -> list[list[dict[str, Any]]]:
    """Every event of every partition in offset order, decoded, with its record time.

    The topics are not transactional, so offsets are contiguous: the list index of an event
    is its offset (checked)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False}
    )
    deadline = time.monotonic() + timeout_s
    log: list[list[dict[str, Any]]] = []
    try:
        for p in range(partitions):
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            consumer.assign([TopicPartition(topic, p, 0)])
            events: list[dict[str, Any]] = []
            while len(events) < high:
                assert time.monotonic() < deadline, f"{topic}[{p}]: read {len(events)}/{high}"
                for msg in consumer.consume(500, timeout=5):
                    assert msg.error() is None and msg.offset() == len(events)
                    _writer, record = codec.decode(msg.value())
                    events.append({**record, "occurred_at": msg.timestamp()[1]})
            log.append(events)
    finally:
        consumer.close()
    return log


def expected_from_log(
    partitions: list[list[dict[str, Any]]], horizon: int
) -> tuple[list[dict[str, Any]], int]:
    """The README's rule over the log, independently of the runtime: the event at offset o is
    a duplicate iff its id sits at an offset in [o - horizon, o) of the same partition.
    Returns the kept events and the number of duplicates.

    Only the nearest earlier copy needs checking (if it lies beyond the horizon, every earlier
    one does too), so one pass with the last offset of each id is the brute force's answer."""
    kept, duplicates = [], 0
    for events in partitions:
        last_seen: dict[str, int] = {}
        for offset, event in enumerate(events):
            previous = last_seen.get(event["event_id"])
            if previous is not None and offset - previous <= horizon:
                duplicates += 1
            else:
                kept.append(event)
            last_seen[event["event_id"]] = offset
    return kept, duplicates


def read_views(stores: dict[str, Any], expected: Expected) -> Expected:
    """What the stores hold, in the shape of `expected`: every URL total, every user with a
    bucket, and the windows of each (size, key) that `expected` has."""
    url_store, user_store, window_store = (
        stores["likes-by-url"],
        stores["likes-by-user"],
        stores["likes-by-window"],
    )
    url = {row[1]: (row[2], row[3], row[4]) for row in url_store.totals_rows("url")}
    user = {}
    for name in {row[1] for row in user_store.bucket_rows("user")}:
        total = user_store.total("user", name)
        user[name] = (total.count, total.first_ms, total.last_ms)
    lo, hi = BASE_MS - 10 * DAY_MS, BASE_MS + 30 * DAY_MS
    windows = {
        (size, key): Counter(dict(window_store.windows(*cell(key), SIZES[size], lo, hi, 100_000)))
        for (size, key) in expected.windows
    }
    return Expected(url, user, windows)


def assert_views_match(stores: dict[str, Any], expected: Expected) -> None:
    """Compare every key of every view with the expectation (and nothing extra)."""
    got = read_views(stores, expected)
    assert got.url == expected.url
    assert set(got.user) == set(expected.user)
    for name, user in expected.user.items():
        assert got.user[name] == user, name
    for key, windows in expected.windows.items():
        assert dict(got.windows[key]) == dict(windows), key


def views_off_by(got: Expected, expected: Expected) -> dict[str, int]:
    """Per view, how many likes it is off by: the sum of |stored - expected| over every
    counter (a missing or extra key counts in full), plus one per wrong first/last time."""

    def per_key(a: dict[str, tuple[int, int, int]], b: dict[str, tuple[int, int, int]]) -> int:
        off = 0
        for key in a.keys() | b.keys():
            ca, cb = a.get(key, (0, 0, 0)), b.get(key, (0, 0, 0))
            off += abs(ca[0] - cb[0]) + (ca[1:] != cb[1:] and ca[0] == cb[0])
        return off

    windows = 0
    for key in got.windows.keys() | expected.windows.keys():
        a, b = got.windows.get(key, Counter()), expected.windows.get(key, Counter())
        windows += sum(abs(a[start] - b[start]) for start in a.keys() | b.keys())
    return {
        "likes-by-url": per_key(got.url, expected.url),
        "likes-by-user": per_key(got.user, expected.user),
        "likes-by-window": windows,
    }
