"""Helpers shared by the benchmarks: a broker to run against, a like stream, percentiles.

Why a module of its own: every benchmark needs the same "use LOGSTREAM_BENCH_BOOTSTRAP or
start a private broker" rule and the same realistic event stream, and a benchmark must not
import the tests (their fixtures and generators may change for test reasons).
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import math
import os
import random
import resource
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import accumulate
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

__all__ = [
    "BASE_MS",
    "DAY_MS",
    "REPO",
    "LikeStream",
    "PageViewStream",
    "bench_broker",
    "create_topic",
    "delete_topics",
    "free_port_block",
    "partition_of",
    "peak_rss_mb",
    "percentile",
]

DAY_MS = 86_400_000
# RFC 4122 variant: the first hex digit of the 4th group is one of 8, 9, a, b.
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: fixed, so runs are comparable


def free_port_block(size: int = 2) -> int:
    """The first of `size` consecutive free loopback ports (a broker needs two)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + size >= 65000:
            continue
        try:
            for offset in range(size):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        return port
    raise RuntimeError("no block of free loopback ports found")


@contextmanager
def bench_broker(heap: str = "1g") -> Iterator[tuple[str, bool]]:
    """Yield (bootstrap servers, private?): LOGSTREAM_BENCH_BOOTSTRAP if set, else a private
    local broker on free ports with its data in a temporary folder, stopped afterwards.

    A private broker keeps the benchmark from touching a developer's `make up` data, and its
    fresh log makes runs repeatable.
    """
    external = os.environ.get("LOGSTREAM_BENCH_BOOTSTRAP")
    if external:
        yield external, False
        return
    from logstream.broker.assemble import ensure_kafka_runtime
    from logstream.broker.local import LocalCluster
    from logstream.settings import load_settings

    settings = load_settings()
    runtime = ensure_kafka_runtime(settings.kafka_version, settings.kafka_cache_dir)
    with tempfile.TemporaryDirectory(prefix="logstream-bench-broker-") as tmp:
        port = free_port_block(2)
        cluster = LocalCluster(runtime, Path(tmp), port=port, controller_port=port + 1, heap=heap)
        cluster.start()
        try:
            yield cluster.bootstrap_servers, True
        finally:
            cluster.stop()


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    """Create a topic and wait for it; the name is fresh, so an existing one is an error."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    futures[name].result(timeout=60)


def delete_topics(bootstrap: str, prefix: str) -> list[str]:
    """Delete every topic whose name starts with `prefix` (benchmark leftovers on an
    external broker, including the changelog topics Quix Streams creates)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [t for t in admin.list_topics(timeout=30).topics if prefix in t]
    if names:
        for future in admin.delete_topics(names).values():
            # best effort: a leftover topic is not a benchmark failure
            with contextlib.suppress(Exception):
                future.result(timeout=60)
    return names


@functools.lru_cache(maxsize=1 << 18)
def partition_of(key: bytes, partitions: int) -> int:
    """The partition every logstream producer picks for a key (Java's murmur2 rule,
    `logstream.kafka.partitioning`). Computing it lets producer processes split a stream by
    partition while every key lands where ingest would put it; cached, since a stream
    repeats its URLs and the pure-Python hash costs microseconds."""
    from logstream.kafka.partitioning import partition_for

    return partition_for(key, partitions)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (NaN when empty)."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _ZipfUrlStream:
    """What the benchmark streams share: `n` events from `seed`, URLs `prefix<rank>` weighted
    1/rank (cumulative weights for bisection), event times spread over `days` with a
    `late_fraction` of late events. Each subclass keeps its own generation loop: it runs
    about 2 us per event, and a shared per-event helper would cost a call each."""

    def __init__(
        self, n: int, seed: int, prefix: str, urls: int, days: int, late_fraction: float
    ) -> None:
        self.n = n
        self.seed = seed
        self.span_ms = days * DAY_MS
        self.late_fraction = late_fraction
        self.url_names = [f"{prefix}{rank}" for rank in range(urls)]
        self._cum = list(accumulate(1.0 / (rank + 1) for rank in range(urls)))


class LikeStream(_ZipfUrlStream):
    """A deterministic like stream shaped like real traffic.

    - URLs are Zipf-like (weight 1/rank) over `urls` distinct pages: a few hot keys and a
      long tail, which is what makes per-batch aggregation pay off (or not);
    - `users` distinct users, uniform: the likes-by-user view sees a huge key space;
    - event time rises over `days` with +-2 minutes of jitter (out of order within a
      partition) and `late_fraction` of events 1 hour to 2 days late.
    The stream is a function of the seed alone; producers that split it must split it by
    partition (see `partition_of`), so each partition holds its events in stream order and
    the out-of-orderness is the generator's, not a race between producer processes.
    """

    def __init__(
        self,
        n: int,
        *,
        seed: int = 11,
        urls: int = 100_000,
        users: int = 1_000_000,
        days: int = 4,
        late_fraction: float = 0.1,
    ) -> None:
        super().__init__(n, seed, "https://example.com/page/", urls, days, late_fraction)
        self.users = users

    def events(self) -> Iterator[dict[str, Any]]:
        """The whole stream, in order.

        Written for speed (about 2 us per event; every producer process generates the whole
        stream): floats instead of randint/randrange, a UUID v4 formatted by hand.
        """
        cum, total, names = self._cum, self._cum[-1], self.url_names
        span, n, late, users = self.span_ms, self.n, self.late_fraction, self.users
        rng = random.Random(self.seed)
        rand, bits, find = rng.random, rng.getrandbits, bisect.bisect_left
        oldest = BASE_MS - 2 * DAY_MS
        late_range = 2 * DAY_MS - 3_600_000
        for i in range(n):
            t = BASE_MS + span * i // n + int(rand() * 240_001) - 120_000
            if rand() < late:
                t -= 3_600_000 + int(rand() * late_range)
            h = f"{bits(128):032x}"
            yield {
                "event_id": f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}",
                "url": names[find(cum, rand() * total)],
                "user_id": f"user-{int(rand() * users)}",
                "occurred_at": t if t > oldest else oldest,
            }


class PageViewStream(_ZipfUrlStream):
    """A deterministic page-view stream (examples/pageviews' `page_view` v1) shaped like
    real traffic: `pages` URLs Zipf-like (weight 1/rank), `visitors` distinct visitors
    (uniform), seconds on page a float (exponential, mean 45 s, rounded to ms), the referrer
    one of 20 pages or null (40 %), event times over `days` with the same jitter and late
    fraction as `LikeStream`. Split between producers by partition, like `LikeStream`.
    """

    REFERRERS = [None] * 13 + [f"https://ref{i}.example.org/" for i in range(20)]

    def __init__(
        self,
        n: int,
        *,
        seed: int = 17,
        pages: int = 1_000,
        visitors: int = 50_000,
        days: int = 4,
        late_fraction: float = 0.1,
    ) -> None:
        super().__init__(n, seed, "https://example.com/article/", pages, days, late_fraction)
        self.visitors = visitors

    def events(self) -> Iterator[dict[str, Any]]:
        """The whole stream, in order (fast, like `LikeStream.events`)."""
        cum, total, names = self._cum, self._cum[-1], self.url_names
        span, n, late, visitors = self.span_ms, self.n, self.late_fraction, self.visitors
        referrers = self.REFERRERS
        nref = len(referrers)
        rng = random.Random(self.seed)
        rand, bits, find, expo = rng.random, rng.getrandbits, bisect.bisect_left, rng.expovariate
        oldest = BASE_MS - 2 * DAY_MS
        late_range = 2 * DAY_MS - 3_600_000
        for i in range(n):
            t = BASE_MS + span * i // n + int(rand() * 240_001) - 120_000
            if rand() < late:
                t -= 3_600_000 + int(rand() * late_range)
            h = f"{bits(128):032x}"
            yield {
                "event_id": f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}",
                "url": names[find(cum, rand() * total)],
                "visitor_id": f"visitor-{int(rand() * visitors)}",
                "seconds_on_page": round(expo(1 / 45.0), 3),
                "referrer": referrers[int(rand() * nref)],
                "occurred_at": t if t > oldest else oldest,
            }
