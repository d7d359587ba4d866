"""The server's Prometheus metrics, counted at request granularity by the app's one ASGI
layer (`ingest_api/edge.py`).

Why at the edge: every route is counted alike, keyed by its route *template*
(`/v1/events/{event_type}`, never the URL a client sent, so labels cannot explode), without
touching the routes. Routes add only what the edge cannot see, through `request.state`
(`note_events`: how many events a batch held or wrote); the error handler notes each
error's code there, which becomes the rejection reason. Off (`LOGSTREAM_METRICS=false`)
nothing is counted.

Why a tally: prometheus_client's `inc()`/`observe()` cost about fifty Python calls and six
lock round trips per request, 8-12 % of single-event ingest. Requests are counted instead
in plain numbers on the event loop (every count is made on the loop thread, so no lock):
each (route, method, status) keeps its own `RouteTally`, made on its first request, so a
request costs one dict lookup, a bisect and a few increments (about 2 us in the server,
measured); `IngestMetrics.fold` adds the tallies to the Prometheus objects once a second
and before every scrape, on the loop too. A scrape of this worker is exact; with
`--workers N` another worker's counts reach the shared files within a second.
"""

from __future__ import annotations

import asyncio
import logging
import math
from bisect import bisect_left
from collections.abc import MutableMapping
from contextlib import suppress
from typing import Any

from fastapi import Request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from logstream.producer import EventProducer

log = logging.getLogger(__name__)

__all__ = ["IngestMetrics", "fold_every_second", "note_events"]

Scope = MutableMapping[str, Any]

EVENTS_PREFIX = "/v1/events/"
UNMATCHED = "unmatched"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
FOLD_INTERVAL_S = 1.0  # tallies reach the Prometheus objects (and the queue gauge) this often
BOUNDS = (*LATENCY_BUCKETS, math.inf)  # a histogram's buckets, +Inf last, as prometheus_client
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
_REASONS = {
    400: "bad_request",
    404: "unknown_event_type",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    503: "unavailable",
}


class RouteTally:
    """What one (route, method, status) was answered since the last fold (event loop only).

    Made on the key's first request and kept: a request then costs one dict lookup, a
    bisect and a few increments. `event_type` is set for writes to a known event type's
    route, None for every other route (and for a path whose type is read per request).
    `accepts_one`: the event type when each request accepted exactly one event (a known
    type's single-event route, answered 2xx), which the fold counts from the requests; the
    request path then skips `_count_events` (`count_events` is false). Measured: all that
    metrics cost a single-event write fell from 9.3 to 4.7 us of CPU per request. The
    route (`ingest_api/routes/events.py`, `post_event`) answers 2xx only for one event the
    broker acknowledged."""

    __slots__ = (
        "accepts_one",
        "count_events",
        "event_type",
        "latency",
        "method",
        "status",
        "template",
    )

    def __init__(self, route: Any, method: str, status: int) -> None:
        self.template: str = getattr(route, "path", None) or UNMATCHED
        self.method = method
        self.status = status
        self.latency: list[float] = new_histogram()  # its count is the number of requests
        writes_events = method == "POST" and self.template.startswith(EVENTS_PREFIX)
        rest = self.template[len(EVENTS_PREFIX) :]
        segment = rest.split("/", 1)[0]
        self.event_type: str | None = None
        if writes_events and status != 404 and "{" not in segment:
            self.event_type = segment
        single = rest == segment and status < 300
        self.accepts_one: str | None = self.event_type if single else None
        self.count_events = writes_events and self.accepts_one is None


class RequestTally:
    """What requests added since the last fold, beyond each route's own tally, as plain
    numbers (event loop only)."""

    __slots__ = ("accepted", "rejected", "unavailable")

    def __init__(self) -> None:
        self.accepted: dict[str, int] = {}
        self.rejected: dict[tuple[str, str], int] = {}
        self.unavailable: dict[str, int] = {}


def new_histogram() -> list[float]:
    """A tallied histogram: one count per bucket of `BOUNDS`, then the sum of the values."""
    return [0] * len(BOUNDS) + [0.0]


def tally_observation(histogram: list[float], value: float) -> None:
    """Count `value` in the first bucket whose upper bound holds it (`le`), and in the sum."""
    histogram[bisect_left(BOUNDS, value)] += 1
    histogram[-1] += value


def add_observations(child: Any, histogram: list[float]) -> None:
    """Add a tallied histogram to a prometheus_client Histogram child, as the same
    `observe()` calls would (tests/unit/test_ingest_metrics_tally.py holds it to that).

    prometheus_client has no public call for n observations at once; its child keeps one
    value per bucket (`_buckets`, not cumulative) and `_sum`, the same objects in one
    process or in multiprocess mode."""
    for bucket, count in zip(child._buckets, histogram[:-1], strict=True):
        if count:
            bucket.inc(count)
    if histogram[-1]:
        child._sum.inc(histogram[-1])


class IngestMetrics:
    """The server's metric objects (public names: README "Operations"), fed by `fold`."""

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
        # Label values are bounded: route templates, methods, statuses, event types and
        # reasons are finite sets, and so are the keys of `_routes` (a route's id: the app's
        # routes live as long as it does).
        self._routes: dict[tuple[int, str, int], RouteTally] = {}
        self._tally = RequestTally()
        self._ack = new_histogram()  # the broker acks since the last fold (`observe_ack`)

    def observe_ack(self, seconds: float) -> None:
        """The producer's hook (`EventProducer.on_ack`, called on the event loop): how long
        a send's broker acknowledgement took, tallied at once. Not a list of the values for
        the fold to sort: a float kept alive until the fold for every request cost the
        server ~0.8 us of CPU per single event (measured), more than this tally."""
        tally_observation(self._ack, seconds)

    def observe_request(self, scope: Scope, status: int, seconds: float) -> None:
        # Keyed by the request's own method: a known method's tally is found at once; any
        # other token finds none and takes `_tally_of`'s path every time (keys stay bounded).
        route = self._routes.get((id(scope.get("route")), scope.get("method", ""), status))
        if route is None:
            route = self._tally_of(scope, status)
        tally_observation(route.latency, seconds)
        if route.count_events:
            self._count_events(route, scope)

    def _tally_of(self, scope: Scope, status: int) -> RouteTally:
        """The tally of a request's (route, method, status), made on the key's first request."""
        method = scope.get("method", "")
        if method not in METHODS:  # any token is a valid method: keep the label bounded
            method = "other"
        matched = scope.get("route")  # routes compare by value, so they are not hashable
        key = (id(matched), method, status)
        route = self._routes.get(key)
        if route is None:
            route = self._routes[key] = RouteTally(matched, method, status)
        return route

    def _count_events(self, route: RouteTally, scope: Scope) -> None:
        """A write's events: accepted, rejected (by reason) and, for a 503, its cause."""
        tally, status = self._tally, route.status
        state = scope.get("state") or {}
        event_type = route.event_type
        if event_type is None:
            path = scope.get("path", "")
            event_type = "unknown" if status == 404 else path[len(EVENTS_PREFIX) :].split("/", 1)[0]
        written, failed = state.get("events_written"), state.get("events_failed")
        accepted = tally.accepted
        if status == 503:
            cause = state.get("unavailable_cause") or state.get("error_code") or "unavailable"
            tally.unavailable[cause] = tally.unavailable.get(cause, 0) + 1
        if status < 300:
            n = written if written is not None else 1
            accepted[event_type] = accepted.get(event_type, 0) + n
            return
        if written:
            accepted[event_type] = accepted.get(event_type, 0) + written
        reason = state.get("error_code") or _REASONS.get(status, str(status))
        if failed is None:
            received = state.get("events_received")
            failed = 1 if received is None else received
        key = (event_type, reason)
        tally.rejected[key] = tally.rejected.get(key, 0) + failed

    def fold(self) -> None:
        """Add what was tallied since the last fold to the Prometheus objects (on the event
        loop: the tallies are only ever touched there)."""
        tally, self._tally = self._tally, RequestTally()
        ack, self._ack = self._ack, new_histogram()
        for route in self._routes.values():
            histogram = route.latency
            count = int(sum(histogram[:-1]))  # the bucket counts: whole numbers
            if not count:
                continue
            route.latency = new_histogram()
            self.requests.labels(route.template, route.method, str(route.status)).inc(count)
            if route.accepts_one is not None:
                accepted = tally.accepted
                accepted[route.accepts_one] = accepted.get(route.accepts_one, 0) + count
            add_observations(self.latency.labels(route.template, route.method), histogram)
        for event_type, count in tally.accepted.items():
            self.accepted.labels(event_type).inc(count)
        for (event_type, reason), count in tally.rejected.items():
            self.rejected.labels(event_type, reason).inc(count)
        for cause, count in tally.unavailable.items():
            self.unavailable.labels(cause).inc(count)
        add_observations(self.ack, ack)


def note_events(
    request: Request,
    *,
    received: int | None = None,
    written: int | None = None,
    failed: int | None = None,
    cause: str | None = None,
) -> None:
    """What a route knows about its events and the edge layer cannot see (cheap: dict sets);
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


async def fold_every_second(metrics: IngestMetrics, producer: EventProducer) -> None:
    """Fold the tally and set the queue gauge every second, until cancelled (one task per
    worker; the lifespan folds once more at shutdown, so a stopping worker's counts stay)."""
    with suppress(asyncio.CancelledError):
        while True:
            try:
                metrics.fold()
                metrics.queue.set(producer.queue_depth)
            except Exception:  # e.g. a full disk under the multiprocess files: try again
                log.exception("folding the request counts into the metrics")
            await asyncio.sleep(FOLD_INTERVAL_S)
