"""The server's metrics keep bounded labels (route templates, known methods) and can be
turned off entirely."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from ingest_api.app import create_app
from logstream.settings import Settings


def request_counts(client: TestClient) -> dict[tuple[str, str, str], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    counts = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            if s.name == "logstream_http_requests_total":
                counts[(s.labels["route"], s.labels["method"], s.labels["status"])] = s.value
    return counts


def test_labels_stay_bounded(settings: Settings, make_topic: Any):
    topic = make_topic(3)
    with TestClient(create_app(settings, topic_overrides={"like": topic})) as client:
        for i in range(3):
            assert client.get(f"/no/such/path/{i}").status_code == 404
        assert client.request("BREW", "/v1/events/likes").status_code in (404, 405)
        assert client.get("/v1/views/likes-by-url", params={"url": ""}).status_code == 422
        counts = request_counts(client)
    assert counts[("unmatched", "GET", "404")] == 3
    assert counts[("/v1/events/likes", "other", "405")] == 1
    assert counts[("/v1/views/likes-by-url", "GET", "422")] == 1
    assert not [k for k in counts if "/no/such" in k[0] or k[1] == "BREW"]


def test_metrics_off_serves_no_metrics_and_counts_nothing(settings: Settings, make_topic: Any):
    topic = make_topic(3)
    off = settings.model_copy(update={"metrics": False})
    with TestClient(create_app(off, topic_overrides={"like": topic})) as client:
        response = client.get("/metrics")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "metrics_off"
        status = client.get("/v1/status").json()
        assert status["ingest"] is None
        assert {v["name"] for v in status["views"]} == {
            "likes-by-url",
            "likes-by-user",
            "likes-by-window",
        }
        assert client.app.state.ingest.producer.on_ack is None  # type: ignore[attr-defined]


def metric(client: TestClient, name: str, **labels: str) -> float:
    text = client.get("/metrics").text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


def test_broker_failures_get_one_vocabulary_and_no_ack_latency(settings: Settings):
    """A single event and a batch the broker cannot take (their topic does not exist, so
    the write times out): the same rejection reason and 503 cause for both paths, and no
    broker-ack observation for either (the histogram holds acknowledged writes only)."""
    quick = settings.model_copy(update={"ingest_ack_timeout_s": 1.0})
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    like = {"url": "https://example.com/a", "user_id": "u"}
    with TestClient(create_app(quick, topic_overrides={"like": missing})) as client:
        single = client.post("/v1/events/likes", json=like)
        batch = client.post("/v1/events/likes/batch", json=[like, like])
        assert (single.status_code, batch.status_code) == (503, 503)
        assert single.json()["error"]["code"] == batch.json()["error"]["code"]
        rejected = "logstream_ingest_events_rejected_total"
        reason = single.json()["error"]["code"]
        assert metric(client, rejected, reason=reason) == 3  # 1 + the batch's 2
        assert metric(client, rejected) == 3
        causes = {
            s.labels["cause"]: s.value
            for family in text_string_to_metric_families(client.get("/metrics").text)
            for s in family.samples
            if s.name == "logstream_ingest_unavailable_total"
        }
        assert len(causes) == 1, causes  # one cause for one failure, single or batch
        (cause,) = causes
        assert cause in {"ack_timeout", "delivery_failed", "queue_full", "refused"}
        assert causes[cause] == 2
        assert metric(client, "logstream_ingest_broker_ack_seconds_count") == 0


WORKER = """
import sys
from fastapi.testclient import TestClient
from ingest_api.app import create_app
from logstream.settings import Settings

settings = Settings(bootstrap_servers=sys.argv[1], data_dir=sys.argv[2])
with TestClient(create_app(settings, topic_overrides={"like": sys.argv[3]})) as client:
    assert client.post("/v1/events/likes", json={"url": "u", "user_id": "a"}).status_code == 202
"""


def test_a_worker_that_stops_leaves_no_live_gauge_behind(
    settings: Settings, make_topic: Any, tmp_path: Path
):
    """Multiprocess mode: a worker's live gauge (producer queue, `livesum`) goes with it, so
    that scrapes do not keep summing dead workers; its counters (totals) stay."""
    shared = tmp_path / "metrics"
    shared.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")},
        "PROMETHEUS_MULTIPROC_DIR": str(shared),
    }
    args = [settings.bootstrap_servers, str(tmp_path / "data"), make_topic(3)]
    worker = subprocess.run(
        [sys.executable, "-c", WORKER, *args], env=env, capture_output=True, timeout=120
    )
    assert worker.returncode == 0, worker.stderr.decode(errors="replace")[-3000:]
    files = {p.name.rsplit("_", 1)[0] for p in shared.glob("*.db")}
    assert "counter" in files  # it ran in multiprocess mode and counted its request
    assert "gauge_livesum" not in files, sorted(shared.iterdir())


def test_single_event_answers_are_counted_by_the_status_sent(settings: Settings, make_topic: Any):
    """Every answer the single-event path can give is counted under the status the client
    got (the edge layer reads it off `send`)."""
    topic = make_topic(3)
    small = settings.model_copy(update={"ingest_max_body_bytes": 1024})
    path = "/v1/events/likes"
    sent: dict[tuple[str, str], int] = {}
    with TestClient(create_app(small, topic_overrides={"like": topic})) as client:
        before = request_counts(client)
        answers = [
            client.post(path, json={"url": "https://example.com/a", "user_id": "u1"}),
            client.post(path, content=b"{not json", headers={"content-type": "application/json"}),
            client.post(path, json={"url": "https://example.com/a"}),  # no user_id
            client.post(path, content=b"url=a", headers={"content-type": "text/plain"}),
            client.post(path, json={"url": "x" * 2000, "user_id": "u1"}),  # over 1,024 bytes
            client.get(path),
            client.post(path, json={"url": "https://example.com/b", "user_id": "u2"}),
        ]
        for response in answers:
            key = (response.request.method, str(response.status_code))
            sent[key] = sent.get(key, 0) + 1
        after = request_counts(client)
    counted = {
        (method, status): after[(route, method, status)] - before.get((route, method, status), 0)
        for route, method, status in after
        if route == path
    }
    assert {k: v for k, v in counted.items() if v} == sent
    assert set(sent) >= {("POST", s) for s in ("202", "400", "413", "415", "422")}
    assert ("GET", "405") in sent
