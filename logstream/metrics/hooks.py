"""What a consumer process measures: one object that `logstream consume` (and the views
benchmark, to measure the cost) attaches to a `ViewRunner`, or that does nothing.

Off (`LOGSTREAM_METRICS=false`, or no metrics port) the runner gets its hooks unchanged
(None), so metrics cost nothing at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from logstream.runtime.runner import RunResult
from logstream.settings import Settings
from logstream.view import View

__all__ = ["ConsumerHooks"]

log = logging.getLogger(__name__)


class ConsumerHooks:
    """Batch and flush hooks for the runner, and the metrics port serving them."""

    def __init__(self, settings: Settings, view: View, version: str, port: int | None) -> None:
        self.port = port
        self.enabled = settings.metrics and port is not None
        self._settings = settings
        self._view = view
        self._version = version
        self._result: Callable[[], RunResult] = RunResult
        self._stoppers: list[Callable[[], None]] = []
        self.events_committed = 0  # written by the commit thread only
        if not self.enabled:
            return
        from prometheus_client import CollectorRegistry

        from logstream.metrics.consumer import ConsumerMetrics
        from logstream.versions import VersionRegistry

        self.group = VersionRegistry.namespace(view.name, version)
        self.registry = CollectorRegistry(auto_describe=False)
        self._metrics = ConsumerMetrics(
            self.group, lambda: self._result(), lambda: self.events_committed, self.registry
        )

    def on_progress(
        self, other: Callable[[int], None] | None = None
    ) -> Callable[[int], None] | None:
        """The runner's per-batch hook: observe the batch size, then call `other`."""
        if not self.enabled:
            return other
        observe = self._metrics.batch.observe
        if other is None:
            return observe

        def both(messages: int) -> None:
            observe(messages)
            other(messages)

        return both

    @property
    def on_commit(self) -> Callable[[float, int], None] | None:
        """The committer's hook: a flush landed after `seconds`, applying `events`."""
        if not self.enabled:
            return None
        observe = self._metrics.flush.observe

        def committed(seconds: float, events: int) -> None:
            observe(seconds)
            self.events_committed += events

        return committed

    def start(self, result: Callable[[], RunResult]) -> None:
        """Serve the metrics (counters read from `result()`, lag from the view store)."""
        self._result = result
        if not self.enabled:
            return
        from logstream.freshness import EndOffsets
        from logstream.metrics.arrivals import LogEndHistory
        from logstream.metrics.consumer import serve_metrics
        from logstream.metrics.views import ViewsCollector, ViewTarget
        from logstream.stores.base import ViewStore
        from logstream.stores.factory import open_view_store
        from logstream.versions import VersionRegistry

        settings, view, version = self._settings, self._view, self._version
        versions = VersionRegistry(settings)
        ends = EndOffsets(settings)
        stores: list[ViewStore] = []

        def store_for(_target: ViewTarget) -> ViewStore:
            # Its own handle: the runner's belongs to the consume and commit threads.
            if not stores:
                stores.append(
                    open_view_store(settings.store_url, settings.data_dir, view, self.group)
                )
            return stores[0]

        def targets() -> list[ViewTarget]:
            return [ViewTarget(view, version, versions.current(view.name) == version)]

        collector = ViewsCollector(settings, targets, store_for, ends, LogEndHistory())
        self.registry.register(collector)
        try:
            stop_server, self.port = serve_metrics(
                self.registry, settings.metrics_host, self.port or 0
            )
        except OSError as exc:  # the view matters more than its metrics: go on without
            log.error(
                "cannot serve metrics on %s:%s (%s); consuming without them",
                settings.metrics_host,
                self.port,
                exc,
            )
            ends.close()
            return
        log.info("metrics on http://%s:%s/metrics", settings.metrics_host, self.port)
        sampler = collector.sampler().start()

        def close() -> None:
            stop_server()
            sampler.stop()
            ends.close()
            for store in stores:
                store.close()

        self._stoppers.append(close)

    def stop(self) -> None:
        for stop in self._stoppers:
            try:
                stop()
            except Exception as exc:  # shutting down: never mask the run's own outcome
                log.warning("stopping the metrics server: %s", exc)
        self._stoppers.clear()
