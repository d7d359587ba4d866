"""The server's request tally, folded into prometheus_client objects, exposes exactly what
calling prometheus_client once per request would (ingest_api/metrics.py)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from ingest_api.metrics import (
    LATENCY_BUCKETS,
    IngestMetrics,
    add_observations,
    new_histogram,
    tally_observation,
)

VALUES = st.lists(
    st.one_of(
        st.sampled_from(LATENCY_BUCKETS),  # exactly on a bound: `le` holds it
        st.floats(min_value=0.0, max_value=30.0, allow_nan=False),
    ),
    max_size=60,
)


def histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram("h_seconds", "h", ["route"], buckets=LATENCY_BUCKETS, registry=registry)


@given(VALUES)
@settings(max_examples=200, deadline=None)
def test_a_tallied_histogram_equals_one_observe_per_value(values: list[float]) -> None:
    direct, folded = CollectorRegistry(), CollectorRegistry()
    child = histogram(direct).labels("r")
    for value in values:
        child.observe(value)
    tally = new_histogram()
    for value in values:
        tally_observation(tally, value)
    add_observations(histogram(folded).labels("r"), tally)
    assert exposition(folded) == exposition(direct)


def exposition(registry: CollectorRegistry) -> list[str]:
    """The text format without `_created` (when each histogram was made)."""
    return [
        line for line in generate_latest(registry).decode().splitlines() if "_created" not in line
    ]


class Route:
    path = "/v1/events/{event_type}"


def scope(status_state: dict[str, object]) -> dict[str, object]:
    return {"route": Route(), "method": "POST", "path": "/v1/events/likes", "state": status_state}


def test_counts_reach_prometheus_only_when_folded_and_each_once() -> None:
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)
    rng = random.Random(7)
    for _ in range(50):
        metrics.observe_request(scope({}), 202, rng.random() / 10)
        metrics.observe_ack(rng.random() / 100)
    metrics.observe_request(scope({"events_received": 3}), 422, 0.001)
    metrics.observe_request(scope({"unavailable_cause": "ack_timeout"}), 503, 2.0)

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert (
        sample("logstream_http_requests_total", route=Route.path, method="POST", status="202")
        is None
    )
    metrics.fold()
    assert (
        sample("logstream_http_requests_total", route=Route.path, method="POST", status="202") == 50
    )
    assert (
        sample("logstream_http_request_duration_seconds_count", route=Route.path, method="POST")
        == 52
    )
    assert sample("logstream_ingest_events_accepted_total", event_type="likes") == 50
    assert (
        sample(
            "logstream_ingest_events_rejected_total", event_type="likes", reason="validation_failed"
        )
        == 3
    )
    assert sample("logstream_ingest_unavailable_total", cause="ack_timeout") == 1
    assert sample("logstream_ingest_broker_ack_seconds_count") == 50
    metrics.fold()  # nothing new: nothing added twice
    assert (
        sample("logstream_http_requests_total", route=Route.path, method="POST", status="202") == 50
    )
    assert sample("logstream_ingest_broker_ack_seconds_count") == 50


class LikesRoute:
    path = "/v1/events/likes"


class LikesBatchRoute:
    path = "/v1/events/likes/batch"


class CatchAllRoute:
    path = "/v1/events/{event_type}/batch"


class StatusRoute:
    path = "/v1/status"


def test_each_route_key_counts_its_own_requests_and_events() -> None:
    """Requests are tallied per (route, method, status): every key keeps its own counts, a
    known type's route names its type, the catch-all's 404 counts as `unknown`; a single
    event's 2xx accepts one event, a batch's what it wrote."""
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)
    likes, catch_all, status_route = LikesRoute(), CatchAllRoute(), StatusRoute()
    batch = {"route": LikesBatchRoute(), "method": "POST", "path": "/v1/events/likes/batch"}
    for _ in range(2):
        metrics.observe_request({**batch, "state": {"events_written": 7}}, 202, 0.01)
    sent = [
        ({"route": likes, "method": "POST", "path": "/v1/events/likes"}, 202),
        ({"route": likes, "method": "POST", "path": "/v1/events/likes"}, 422),
        ({"route": catch_all, "method": "POST", "path": "/v1/events/nope/batch"}, 404),
        ({"route": status_route, "method": "GET", "path": "/v1/status"}, 200),
        ({"route": None, "method": "BREW", "path": "/teapot"}, 404),
    ]
    counts = [5, 2, 3, 4, 1]
    for (request, code), n in zip(sent, counts, strict=True):
        for _ in range(n):
            metrics.observe_request({**request, "state": {}}, code, 0.002)
    metrics.fold()

    def requests(route: str, method: str, code: str) -> float | None:
        labels = {"route": route, "method": method, "status": code}
        return registry.get_sample_value("logstream_http_requests_total", labels)

    assert requests("/v1/events/likes", "POST", "202") == 5
    assert requests("/v1/events/likes", "POST", "422") == 2
    assert requests("/v1/events/{event_type}/batch", "POST", "404") == 3
    assert requests("/v1/status", "GET", "200") == 4
    assert requests("unmatched", "other", "404") == 1
    latency = registry.get_sample_value(
        "logstream_http_request_duration_seconds_count",
        {"route": "/v1/events/likes", "method": "POST"},
    )
    assert latency == 7  # both statuses of the route, one histogram
    accepted = registry.get_sample_value(
        "logstream_ingest_events_accepted_total", {"event_type": "likes"}
    )
    assert accepted == 5 + 2 * 7
    rejected = {
        (s.labels["event_type"], s.labels["reason"]): s.value
        for family in registry.collect()
        if family.name == "logstream_ingest_events_rejected"
        for s in family.samples
        if s.name.endswith("_total")
    }
    assert rejected == {("likes", "validation_failed"): 2, ("unknown", "unknown_event_type"): 3}


def test_any_method_token_counts_as_other_and_keeps_the_tallies_bounded() -> None:
    """Any token is a valid HTTP method: unknown ones share one `other` tally, and sending
    many distinct ones must not grow the server's memory."""
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)
    for n in range(500):
        metrics.observe_request({"route": None, "method": f"X{n}", "state": {}}, 405, 0.001)
        metrics.observe_request({"route": None, "method": "GET", "state": {}}, 404, 0.001)
    metrics.fold()

    def requests(method: str, code: str) -> float | None:
        labels = {"route": "unmatched", "method": method, "status": code}
        return registry.get_sample_value("logstream_http_requests_total", labels)

    assert requests("other", "405") == 500
    assert requests("GET", "404") == 500
    assert len(metrics._routes) == 2  # one tally per (route, method label, status)
