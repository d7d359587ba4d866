"""One place that turns a registry into Prometheus text, in one process or across workers.

prometheus_client's known pitfall: with several uvicorn workers each process keeps its own
registry, so a scrape (answered by one worker) undercounts. `logstream ingest --workers N`
therefore sets PROMETHEUS_MULTIPROC_DIR before the workers start: every worker writes its
values to files there and a scrape sums them (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

__all__ = [
    "CONTENT_TYPE_LATEST",
    "MULTIPROC_ENV",
    "mark_worker_dead",
    "multiprocess_dir",
    "prepare_multiprocess_dir",
    "registry_of",
    "render",
    "scrape_registry",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The shared folder of multiprocess mode, when this process runs in it."""
    return os.environ.get(MULTIPROC_ENV) or None


def prepare_multiprocess_dir() -> Path:
    """A fresh, empty, private folder (0700, unpredictable name: no other user can plant
    or read files there) for the workers' files; stale files would be summed in."""
    path = Path(tempfile.mkdtemp(prefix="logstream-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def mark_worker_dead() -> None:
    """A worker's last word in multiprocess mode: drop its live gauges (the producer queue),
    so that a scrape does not keep summing a worker that exited. Counters stay (totals)."""
    if multiprocess_dir() is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(os.getpid())


def scrape_registry(own: CollectorRegistry) -> CollectorRegistry:
    """What a scrape reads of the counters: this process's registry, or every worker's
    files in multiprocess mode."""
    if multiprocess_dir() is None:
        return own
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


def registry_of(*collectors: Collector) -> CollectorRegistry:
    """A registry holding `collectors` (computed at scrape time, e.g. lag)."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    return registry


def render(*registries: CollectorRegistry) -> bytes:
    """Text exposition of the registries, one after the other (no family in two of them)."""
    return b"".join(generate_latest(registry) for registry in registries)
