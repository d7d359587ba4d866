"""The server's Prometheus metrics, counted by one ASGI middleware at request granularity.

Why a middleware: every route is counted alike, keyed by its route *template*
(`/v1/events/{event_type}`, never the URL a client sent, so labels cannot explode), without
touching the routes. Routes add only what the middleware cannot see, through
`request.state` (`note_events`: how many events a batch held or wrote); the error handler
notes each error's code there, which becomes the rejection reason. Off
(`LOGSTREAM_METRICS=false`) nothing is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from logstream.producer import EventProducer

__all__ = ["IngestMetrics", "MetricsMiddleware", "note_events", "sample_queue_depth"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

EVENTS_PREFIX = "/v1/events/"
UNMATCHED = "unmatched"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
QUEUE_SAMPLE_S = 1.0
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
_REASONS = {
    400: "bad_request",
    404: "unknown_event_type",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    503: "unavailable",
}


class IngestMetrics:
    """The server's metric objects (public names: README "Operations")."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "logstream_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "logstream_http_request_duration_seconds",
            "Time from request to response, by route template and method",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.accepted = Counter(
            "logstream_ingest_events_accepted",
            "Events acknowledged by the broker and answered 202 (or written in a 503 batch)",
            ["event_type"],
            registry=registry,
        )
        self.rejected = Counter(
            "logstream_ingest_events_rejected",
            "Events not written, by reason (the error code of the answer)",
            ["event_type", "reason"],
            registry=registry,
        )
        self.unavailable = Counter(
            "logstream_ingest_unavailable",
            "503 answers to event writes, by cause: the broker's (queue_full, ack_timeout, "
            "delivery_failed, refused; a batch: its first failed event's) or unavailable "
            "(starting or stopping)",
            ["cause"],
            registry=registry,
        )
        self.ack = Histogram(
            "logstream_ingest_broker_ack_seconds",
            "From handing events to the producer to the broker's acknowledgement (per request)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue = Gauge(
            "logstream_ingest_producer_queue_messages",
            "Messages in the producer's local queue, not yet acknowledged (sampled every second)",
            registry=registry,
            multiprocess_mode="livesum",
        )
        # (route template, method, status) -> its counter and histogram children. Bounded:
        # templates, methods and statuses are finite sets.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._accepted: dict[str, Any] = {}  # event type -> its child (types are finite)

    def observe_request(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or UNMATCHED
        method = scope.get("method", "")
        if method not in METHODS:  # any token is a valid method: keep the label bounded
            method = "other"
        key = (template, method, status)
        children = self._children.get(key)
        if children is None:  # labels() validates and locks: do it once per combination
            children = (
                self.requests.labels(template, method, str(status)),
                self.latency.labels(template, method),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        if method == "POST" and template.startswith(EVENTS_PREFIX):
            self._count_events(scope, status)
            if status == 503:
                self._count_unavailable(scope)

    def _count_unavailable(self, scope: Scope) -> None:
        """A 503 of the write path, by cause (the producer's, else the error code)."""
        state = scope.get("state") or {}
        cause = state.get("unavailable_cause") or state.get("error_code") or "unavailable"
        self.unavailable.labels(cause).inc()

    def _accepted_child(self, event_type: str) -> Any:
        """The accepted counter of `event_type`: `labels()` locks and validates, so it runs
        once per type, not once per request (a 2xx names a route's real type)."""
        child = self._accepted.get(event_type)
        if child is None:
            child = self._accepted[event_type] = self.accepted.labels(event_type)
        return child

    def _count_events(self, scope: Scope, status: int) -> None:
        state = scope.get("state") or {}
        path = scope.get("path", "")
        event_type = "unknown" if status == 404 else path[len(EVENTS_PREFIX) :].split("/", 1)[0]
        written, failed = state.get("events_written"), state.get("events_failed")
        if status < 300:
            self._accepted_child(event_type).inc(written if written is not None else 1)
            return
        if written:
            self._accepted_child(event_type).inc(written)
        reason = state.get("error_code") or _REASONS.get(status, str(status))
        if failed is None:
            received = state.get("events_received")
            failed = 1 if received is None else received
        self.rejected.labels(event_type, reason).inc(failed)


def note_events(
    request: Request,
    *,
    received: int | None = None,
    written: int | None = None,
    failed: int | None = None,
    cause: str | None = None,
) -> None:
    """What a route knows about its events and the middleware cannot see (cheap: dict sets);
    `cause`: why the broker did not take them (a batch's first failed event's cause)."""
    state = request.scope.setdefault("state", {})
    if cause is not None:
        state["unavailable_cause"] = cause
    if received is not None:
        state["events_received"] = received
    if written is not None:
        state["events_written"] = written
    if failed is not None:
        state["events_failed"] = failed


class MetricsMiddleware:
    """Counts every HTTP request once it is answered (pure ASGI: no per-request objects)."""

    def __init__(self, app: Any, metrics: IngestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe_request(scope, status, time.perf_counter() - started)


async def sample_queue_depth(producer: EventProducer, gauge: Gauge) -> None:
    """Set the queue gauge every second, until cancelled (one task per worker)."""
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            gauge.set(producer.queue_depth)
            await asyncio.sleep(QUEUE_SAMPLE_S)


def install(app: FastAPI, metrics: IngestMetrics) -> None:
    app.add_middleware(MetricsMiddleware, metrics=metrics)
