"""A consumer process's metrics, served on a port of its own (`consume --metrics-port`).

Nothing is counted per event: the totals are the runner's own `RunResult` fields, read when
scraped, except events applied, which are counted when their flush commits (a batch read
but then fenced, lost or abandoned is read again and must not count twice); batch sizes and
flush durations are observed once per batch and once per flush through the runner's hooks;
lag comes from the view store at scrape time (`logstream.metrics.views`); process memory
and CPU from prometheus_client's process collector.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from logstream.runtime.runner import RunResult

__all__ = ["ConsumerMetrics", "serve_metrics"]

BATCH_BUCKETS = (1, 10, 50, 100, 500, 1000, 2500, 5000, 10000)
FLUSH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

_TOTALS = (
    (
        "events_skipped",
        "logstream_consumer_events_skipped",
        "Events skipped: below a backfill's cut-off time (already counted)",
    ),
    ("duplicates", "logstream_consumer_duplicates", "Retries recognised by event_id, not applied"),
    ("dead_letters", "logstream_consumer_dead_letters", "Messages sent to the dead-letter topic"),
    ("flushes", "logstream_consumer_flushes", "Flushes handed to the store"),
    (
        "fenced",
        "logstream_consumer_fenced_commits",
        "Flushes refused by the store's fencing (another member moved the offsets)",
    ),
    (
        "rebalances",
        "logstream_consumer_rebalances",
        "Partition assignments, revocations and losses",
    ),
)


class ConsumerMetrics(Collector):
    """Counters read from a `RunResult`, plus batch and flush histograms fed by hooks."""

    def __init__(
        self,
        view: str,
        result: Callable[[], RunResult],
        applied: Callable[[], int],
        registry: CollectorRegistry,
    ):
        """`applied()`: events whose flush committed to the store."""
        self._view = view
        self._result = result
        self._applied = applied
        self.batch = Histogram(
            "logstream_consumer_batch_messages",
            "Messages per consumed batch",
            ["view"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        ).labels(view)
        self.flush = Histogram(
            "logstream_consumer_flush_duration_seconds",
            "From handing a flush to the commit thread until it landed (retries included)",
            ["view"],
            buckets=FLUSH_BUCKETS,
            registry=registry,
        ).labels(view)
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        result = self._result()
        applied = CounterMetricFamily(
            "logstream_consumer_events_applied",
            "Events applied to the view: in flushes committed to the store",
            labels=["view"],
        )
        applied.add_metric([self._view], self._applied())
        yield applied
        for field, name, doc in _TOTALS:
            family = CounterMetricFamily(name, doc, labels=["view"])
            family.add_metric([self._view], getattr(result, field))
            yield family


def serve_metrics(
    registry: CollectorRegistry, host: str, port: int
) -> tuple[Callable[[], None], int]:
    """Serve `registry` (plus process memory and CPU) on http://host:port/metrics in a
    daemon thread; returns the function that stops it and the port bound (port 0: any)."""
    from prometheus_client import start_http_server

    ProcessCollector(registry=registry)
    server, thread = start_http_server(port, addr=host, registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)

    return stop, int(server.server_port)
