"""Every view version's lag, progress and dead letters, read from the stores at scrape time.

The store is authoritative for what a view applied (invariant 2), so the numbers hold
whatever runs: a stopped consumer's lag keeps growing here, which is how an alert sees it.
The server exports this for every view version; each consumer for its own. The label
`view` is the consumer group (`likes-by-url`, or `likes-by-url@v2` for a rebuild), like
kafka-lag-exporter's `group`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from logstream.freshness import EndOffsets
from logstream.metrics.arrivals import LagSampler, LogEndHistory
from logstream.metrics.lag import ViewLag, view_lag
from logstream.settings import Settings
from logstream.stores.base import ViewStore
from logstream.topics import resolve_topics
from logstream.versions import VersionRegistry
from logstream.view import View

__all__ = ["ViewStatus", "ViewTarget", "ViewsCollector"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ViewTarget:
    view: View
    version: str
    current: bool

    @property
    def group(self) -> str:
        return VersionRegistry.namespace(self.view.name, self.version)


@dataclass(frozen=True)
class ViewStatus:
    target: ViewTarget
    lag: ViewLag | None  # None: the broker cannot be asked right now
    dead_letters: int
    newest_event_ms: int | None

    def as_json(self) -> dict[str, object]:
        lag = self.lag
        return {
            "view": self.target.group,
            "name": self.target.view.name,
            "version": self.target.version,
            "current": self.target.current,
            "lag_offsets": lag.offsets if lag else None,
            "lag_seconds": round(lag.seconds, 3) if lag and lag.seconds is not None else None,
            "applied": sum(p.applied for p in lag.partitions) if lag else None,
            "log_end": sum(p.log_end for p in lag.partitions) if lag else None,
            "progress": round(lag.progress, 4) if lag else None,
            "lost_to_retention": lag.lost_to_retention if lag else None,
            "dead_letters": self.dead_letters,
            "newest_event_ms": self.newest_event_ms,
        }


class ViewsCollector(Collector):
    """Gauges per view version, computed when scraped (or asked by the dashboard)."""

    def __init__(
        self,
        settings: Settings,
        targets: Callable[[], list[ViewTarget]],
        store_for: Callable[[ViewTarget], ViewStore],
        ends: EndOffsets,
        history: LogEndHistory,
    ) -> None:
        self._settings = settings
        self._targets = targets
        self._store_for = store_for
        self._ends = ends
        self._history = history
        self._topics: frozenset[str] = frozenset()

    def topics(self) -> frozenset[str]:
        """Every topic a view version reads: what the lag sampler samples. Versions of a
        view share its topics, so the answer is kept once known (the sampler asks every
        interval; reading the version registry each time would cost a store round trip)."""
        if not self._topics:
            found: set[str] = set()
            for target in self._targets():
                found.update(resolve_topics(self._settings, target.view.topics))
            self._topics = frozenset(found)  # replaced whole: readers on other threads
        return self._topics

    def sampler(self) -> LagSampler:
        """A (not yet started) thread sampling the log ends of `topics()` every
        `LOGSTREAM_LAG_SAMPLE_INTERVAL_S`: the resolution of lag in seconds."""
        return LagSampler(
            self._history, self._ends, self.topics, self._settings.lag_sample_interval_s
        )

    def statuses(self) -> list[ViewStatus]:
        out = []
        for target in self._targets():
            try:
                stats = self._store_for(target).stats()
            except Exception as exc:  # a store not created yet, or unreachable: skip it
                log.debug("no stats for %s: %s", target.group, exc)
                continue
            topics = resolve_topics(self._settings, target.view.topics)
            lag = view_lag(topics, stats.positions, self._ends, self._history)
            out.append(ViewStatus(target, lag, stats.dlq_count, stats.max_event_ms))
        return out

    def collect(self) -> Iterator[Metric]:
        statuses = self.statuses()
        offsets = GaugeMetricFamily(
            "logstream_view_lag_offsets",
            "Records in the log the view has not applied (log end - applied offset)",
            labels=["view", "topic", "partition"],
        )
        seconds = GaugeMetricFamily(
            "logstream_view_lag_seconds",
            "Seconds since the oldest record the view has not applied arrived in the log "
            "(interpolated from sampled log ends; 0 when caught up)",
            labels=["view"],
        )
        applied = GaugeMetricFamily(
            "logstream_view_applied_offset",
            "Next offset the view store holds per partition (its rate is events/s)",
            labels=["view", "topic", "partition"],
        )
        progress = GaugeMetricFamily(
            "logstream_view_progress_ratio",
            "Share of the retained log applied: a backfill's or rebuild's progress",
            labels=["view"],
        )
        lost = GaugeMetricFamily(
            "logstream_view_lost_to_retention",
            "Records deleted from the log (retention) before the view applied them, while "
            "its store stands below the log start",
            labels=["view", "topic", "partition"],
        )
        dead = GaugeMetricFamily(
            "logstream_view_dead_letters",
            "Dead letters the view has written (from its store)",
            labels=["view"],
        )
        info = GaugeMetricFamily(
            "logstream_view_info",
            "One per view version; current=true answers queries",
            labels=["view", "name", "version", "current"],
        )
        for status in statuses:
            group = status.target.group
            current = "true" if status.target.current else "false"
            info.add_metric([group, status.target.view.name, status.target.version, current], 1)
            dead.add_metric([group], status.dead_letters)
            if status.lag is None:
                continue
            lag_s = status.lag.seconds
            seconds.add_metric([group], math.nan if lag_s is None else lag_s)
            progress.add_metric([group], status.lag.progress)
            for p in status.lag.partitions:
                labels = [group, p.topic, str(p.partition)]
                offsets.add_metric(labels, p.lag_offsets)
                applied.add_metric(labels, p.applied)
                lost.add_metric(labels, p.lost_to_retention)
        yield from (offsets, seconds, applied, progress, lost, dead, info)
