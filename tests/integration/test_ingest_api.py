"""The ingest API against a real broker: a 2xx means the event is in the log, exactly as posted.

Most tests use the session broker and a fresh topic (injected with `topic_overrides`); the
outage and SIGTERM tests run a private broker they can stop without disturbing anyone.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import fastavro
import httpx
import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, Consumer, TopicPartition
from fastapi.testclient import TestClient
from fastavro.schema import fingerprint, to_parsing_canonical_form

from ingest_api.app import create_app
from logstream.kafka.admin import create_topics, make_admin
from logstream.settings import Settings
from logstream.topics import event_topic_specs
from tests.conftest import free_port_block, local_cluster

REPO = Path(__file__).resolve().parents[2]
URL = "https://example.com/a?b=c"
NDJSON = {"Content-Type": "application/x-ndjson"}


# ----- helpers --------------------------------------------------------------------------------
def latest_avsc() -> dict[str, Any]:
    """The newest Like schema, read straight from the file (not through our catalogue)."""
    files = sorted(
        (REPO / "avro_schemas").glob("like.v*.avsc"),
        key=lambda p: int(p.name.split(".v")[1].split(".")[0]),
    )
    return json.loads(files[-1].read_text())


def read_at(bootstrap: str, topic: str, partition: int, offset: int) -> Any:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None:
                assert msg.error() is None, msg.error()
                return msg
    finally:
        consumer.close()
    raise AssertionError(f"no message at {topic}[{partition}]@{offset}")


def read_all(bootstrap: str, topic: str) -> dict[tuple[int, int], Any]:
    """Every message of `topic` by (partition, offset), up to the end offsets seen at start."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        found: dict[tuple[int, int], Any] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(
            sum(1 for (p, _) in found if p == part) < end for part, end in ends.items()
        ):
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                assert msg.error() is None, msg.error()
                found[(msg.partition(), msg.offset())] = msg
        return found
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"w-{uuid.uuid4()}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
            for p in partitions
        }
    finally:
        consumer.close()


def decode_value(value: bytes) -> dict[str, Any]:
    """Decode as any Avro user would, from the .avsc alone (logical types become objects),
    then back to the JSON-ish form that was posted."""
    record = fastavro.schemaless_reader(BytesIO(value[10:]), fastavro.parse_schema(latest_avsc()))
    assert isinstance(record, dict)
    record["event_id"] = str(record["event_id"])
    occurred = record["occurred_at"]
    record["occurred_at"] = (occurred - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        milliseconds=1
    )
    return record


def like(**fields: Any) -> dict[str, Any]:
    return {"url": URL, "user_id": "u-1", **fields}


@contextmanager
def running_app(settings: Settings, topic: str | None = None) -> Iterator[TestClient]:
    overrides = {"like": topic} if topic else None
    with TestClient(create_app(settings, topic_overrides=overrides)) as client:
        yield client


@pytest.fixture
def topic(make_topic) -> str:
    return make_topic(partitions=3, prefix="likes")


@pytest.fixture
def client(settings: Settings, topic: str) -> Iterator[TestClient]:
    with running_app(settings, topic) as c:
        yield c


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body["error"]


# ----- the happy path: what a 202 promises ----------------------------------------------------
def test_202_means_the_exact_event_is_in_the_log(client, topic, kafka_bootstrap):
    event_id = str(uuid.uuid4())
    posted = like(event_id=event_id, occurred_at="2024-05-01T14:00:00.250+02:00")
    response = client.post("/v1/events/likes", json=posted)

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["event_id"] == event_id and body["topic"] == topic
    msg = read_at(kafka_bootstrap, topic, body["partition"], body["offset"])
    value = msg.value()
    expected_fp = fingerprint(
        to_parsing_canonical_form(fastavro.parse_schema(latest_avsc())), "CRC-64-AVRO"
    )
    assert value[:2] == b"\xc3\x01"
    assert value[2:10] == bytes.fromhex(expected_fp)
    occurred_ms = 1714564800250  # 12:00:00.250Z
    assert decode_value(value) == {
        "event_id": event_id,
        "url": URL,
        "user_id": "u-1",
        "occurred_at": occurred_ms,
        "referrer": None,
    }
    assert msg.key() == URL.encode()
    assert msg.timestamp() == (TIMESTAMP_CREATE_TIME, occurred_ms)


def test_defaults_epoch_millis_and_referrer(client, topic, kafka_bootstrap):
    before = int(time.time() * 1000)
    generated = client.post("/v1/events/likes", json=like())
    after = int(time.time() * 1000)
    assert generated.status_code == 202, generated.text
    body = generated.json()
    uuid.UUID(body["event_id"])
    record = decode_value(
        read_at(kafka_bootstrap, topic, body["partition"], body["offset"]).value()
    )
    assert record["event_id"] == body["event_id"]
    assert before <= record["occurred_at"] <= after

    explicit = client.post(
        "/v1/events/likes", json=like(occurred_at=1_700_000_000_123, referrer="https://r.example/")
    )
    assert explicit.status_code == 202, explicit.text
    body = explicit.json()
    msg = read_at(kafka_bootstrap, topic, body["partition"], body["offset"])
    assert decode_value(msg.value())["referrer"] == "https://r.example/"
    assert msg.timestamp() == (TIMESTAMP_CREATE_TIME, 1_700_000_000_123)


def test_json_batch_every_event_at_its_returned_place(client, topic, kafka_bootstrap):
    events = [like(url=f"https://example.com/{i}", event_id=str(uuid.uuid4())) for i in range(50)]
    response = client.post("/v1/events/likes/batch", json=events)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 50
    stored = read_all(kafka_bootstrap, topic)
    for i, result in enumerate(body["events"]):
        assert result["index"] == i and result["status"] == "written"
        msg = stored[(result["partition"], result["offset"])]
        assert decode_value(msg.value())["event_id"] == events[i]["event_id"] == result["event_id"]
        assert msg.key() == events[i]["url"].encode()


def test_ndjson_batch(client, topic, kafka_bootstrap):
    events = [like(user_id=f"u{i}", event_id=str(uuid.uuid4())) for i in range(5)]
    text = "\n".join(json.dumps(e) for e in events) + "\n\n"
    response = client.post("/v1/events/likes/batch", content=text, headers=NDJSON)
    assert response.status_code == 202, response.text
    results = response.json()["events"]
    assert [r["event_id"] for r in results] == [e["event_id"] for e in events]
    for event, result in zip(events, results, strict=True):
        msg = read_at(kafka_bootstrap, topic, result["partition"], result["offset"])
        assert decode_value(msg.value())["user_id"] == event["user_id"]


def test_batch_with_one_invalid_event_writes_nothing(client, topic, kafka_bootstrap):
    before = end_offsets(kafka_bootstrap, topic)
    events = [like(url=f"https://example.com/{i}") for i in range(20)]
    events[7] = like(url="")
    events[12] = {"url": URL, "user_id": "u", "occurred_at": "2024-05-01T12:00:00"}

    response = client.post("/v1/events/likes/batch", json=events)

    error = assert_error(response, 422, "validation_failed")
    named = {(f["index"], f["field"]) for f in error["fields"]}
    assert named == {(7, "url"), (12, "occurred_at")}
    client.app.state.ingest.producer.flush(10)  # had anything been enqueued, it is out now
    assert end_offsets(kafka_bootstrap, topic) == before


# ----- every error status -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("/v1/events/likes", b'{"url": "x", '),
        ("/v1/events/likes", b""),
        ("/v1/events/likes", b'{"url": NaN}'),
        ("/v1/events/likes", b"\xff\xfe\x00"),
        ("/v1/events/likes", b"[" * 100_000 + b"]" * 100_000),
        ("/v1/events/likes/batch", b"[{}, "),
    ],
)
def test_400_malformed_json(client, path, content):
    assert_error(
        client.post(path, content=content, headers={"Content-Type": "application/json"}),
        400,
        "malformed_json",
    )


def test_400_malformed_ndjson_line_names_the_event(client):
    text = json.dumps(like()) + "\n{oops\n"
    error = assert_error(
        client.post("/v1/events/likes/batch", content=text, headers=NDJSON), 400, "malformed_json"
    )
    assert error["fields"][0]["index"] == 1 and "line 2" in error["fields"][0]["message"]


@pytest.mark.parametrize("path", ["/v1/events/shares", "/v1/events/shares/batch"])
def test_404_unknown_event_type(client, path):
    error = assert_error(client.post(path, json=like()), 404, "unknown_event_type")
    assert "/v1/events/likes" in error["message"]


def test_404_and_405_keep_the_error_format(client):
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.get("/v1/events/likes"), 405, "method_not_allowed")


def test_413_declared_too_large(settings, topic):
    small = settings.model_copy(update={"ingest_max_body_bytes": 2048})
    with running_app(small, topic) as c:
        response = c.post("/v1/events/likes", json=like(user_id="x" * 3000))
        assert_error(response, 413, "payload_too_large")


def test_413_streamed_body_without_content_length(settings, topic):
    small = settings.model_copy(update={"ingest_max_body_bytes": 2048})

    def chunks() -> Iterator[bytes]:
        yield b'[{"url": "u", "user_id": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}]'

    with running_app(small, topic) as c:
        response = c.post(
            "/v1/events/likes/batch", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert "content-length" not in {k.lower() for k in response.request.headers}
        assert_error(response, 413, "payload_too_large")


def test_413_too_many_events(settings, topic, kafka_bootstrap):
    few = settings.model_copy(update={"ingest_max_batch_events": 3})
    with running_app(few, topic) as c:
        before = end_offsets(kafka_bootstrap, topic)
        assert_error(c.post("/v1/events/likes/batch", json=[like()] * 4), 413, "too_many_events")
        assert end_offsets(kafka_bootstrap, topic) == before


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/events/likes", {"Content-Type": "text/plain"}),
        ("/v1/events/likes", {"Content-Type": "application/x-ndjson"}),
        ("/v1/events/likes", {}),
        ("/v1/events/likes/batch", {"Content-Type": "application/x-www-form-urlencoded"}),
    ],
)
def test_415_wrong_content_type(client, path, headers):
    response = client.post(path, content=json.dumps(like()).encode(), headers=headers)
    error = assert_error(response, 415, "unsupported_media_type")
    assert "application/json" in error["message"]


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"user_id": "u"}, "url"),
        (like(url=""), "url"),
        (like(url="x" * 2049), "url"),
        (like(url=5), "url"),
        (like(url="\ud800"), "url"),
        (like(user_id=" "), "user_id"),
        (like(event_id="not-a-uuid"), "event_id"),
        (like(occurred_at=True), "occurred_at"),
        (like(occurred_at=1.5e12), "occurred_at"),
        (like(occurred_at="2024-05-01T12:00:00"), "occurred_at"),
        (like(occurred_at="yesterday"), "occurred_at"),
        (like(occurred_at=-1), "occurred_at"),
        (like(colour="red"), "colour"),
        ([like()], None),
    ],
)
def test_422_names_the_field(client, event, field):
    content = json.dumps(event)  # ensure_ascii: a lone surrogate travels as "\\ud800"
    response = client.post(
        "/v1/events/likes", content=content, headers={"Content-Type": "application/json"}
    )
    error = assert_error(response, 422, "validation_failed")
    assert [f.get("field") for f in error["fields"]] == [field]
    assert "index" not in error["fields"][0]


def test_422_occurred_at_too_far_in_the_future(client, settings):
    limit = settings.ingest_max_future_ms
    soon = int(time.time() * 1000) + limit // 2
    assert client.post("/v1/events/likes", json=like(occurred_at=soon)).status_code == 202
    too_late = int(time.time() * 1000) + limit + 60_000
    error = assert_error(
        client.post("/v1/events/likes", json=like(occurred_at=too_late)), 422, "validation_failed"
    )
    assert error["fields"][0]["field"] == "occurred_at"
    assert "future" in error["fields"][0]["message"]


def test_422_batch_shapes(client):
    assert_error(client.post("/v1/events/likes/batch", json={"url": URL}), 422, "validation_failed")
    assert_error(client.post("/v1/events/likes/batch", json=[]), 422, "validation_failed")


# ----- health ---------------------------------------------------------------------------------
def test_healthz_and_readyz(client, settings):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"
    with running_app(settings, topic=f"missing-{uuid.uuid4().hex[:8]}") as c:
        not_ready = c.get("/readyz")
        assert not_ready.status_code == 503
        assert "missing" in not_ready.json()["topics"].values()
        assert not_ready.headers["Retry-After"]
    assert client.get("/docs").status_code == 200


# ----- no 5xx for anything the OpenAPI spec lets a fuzzer send -----------------------------------
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_fuzzed_requests_never_get_5xx(settings, topic, mode):
    """Schemathesis cases from our own OpenAPI document; schemathesis' pytest loader is not
    used because it does not run on pytest 9, so the strategy is driven by plain Hypothesis."""
    import schemathesis
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hypothesis_settings
    from schemathesis import GenerationMode

    app = create_app(settings, topic_overrides={"like": topic})
    with TestClient(app):  # runs the lifespan: producer and codec live on app.state
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        strategy = schema.as_strategy(generation_mode=GenerationMode(mode))
        seen: list[int] = []

        @given(case=strategy)
        @hypothesis_settings(
            max_examples=100, deadline=None, suppress_health_check=list(HealthCheck)
        )
        def never_5xx(case: Any) -> None:
            response = case.call()
            seen.append(response.status_code)
            assert response.status_code < 500, (case.path, case.body, response.text)

        never_5xx()
    assert len(seen) >= 50
    assert any(400 <= code < 500 for code in seen) if mode == "negative" else True


# ----- a private broker we may stop: outage and SIGTERM -----------------------------------------
@pytest.fixture(scope="module")
def private_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    cluster = local_cluster(tmp_path_factory.mktemp("private-broker"))
    cluster.start()
    try:
        settings = Settings(bootstrap_servers=cluster.bootstrap_servers, topic_partitions=3)
        create_topics(make_admin(settings), event_topic_specs(settings, ["likes"]))
        yield cluster
    finally:
        cluster.stop()


def post_until(client: TestClient, status: int, timeout_s: float) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.post("/v1/events/likes", json=like())
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.5)


def test_broker_down_503_within_bound_then_recovers_without_restart(private_broker):
    bound = 2.0
    settings = Settings(
        bootstrap_servers=private_broker.bootstrap_servers, ingest_ack_timeout_s=bound
    )
    with running_app(settings) as client:
        assert post_until(client, 202, 30).status_code == 202
        private_broker.stop()
        try:
            for path, payload in (
                ("/v1/events/likes", like()),
                ("/v1/events/likes/batch", [like(), like()]),
            ):
                started = time.monotonic()
                response = client.post(path, json=payload)
                elapsed = time.monotonic() - started
                assert_error(response, 503, "broker_unavailable")
                assert int(response.headers["Retry-After"]) >= 1
                assert elapsed <= bound + 0.5, elapsed
            batch = response.json()
            assert batch["accepted"] == 0
            assert {e["status"] for e in batch["events"]} == {"failed"}
            assert client.get("/readyz").status_code == 503
        finally:
            private_broker.start()
        recovered = post_until(client, 202, 60)  # same app, same producer
        assert recovered.status_code == 202, recovered.text
        assert client.get("/readyz").status_code == 200


def test_sigterm_during_load_loses_no_acknowledged_event(private_broker, tmp_path):
    bootstrap = private_broker.bootstrap_servers
    port = free_port_block(1)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")},
        "LOGSTREAM_BOOTSTRAP_SERVERS": bootstrap,
        "LOGSTREAM_DATA_DIR": str(tmp_path),
    }
    log = (tmp_path / "ingest.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "logstream", "ingest", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    try:
        acked, answered_after_term = asyncio.run(
            _load_then_sigterm(server, f"http://127.0.0.1:{port}")
        )
        # uvicorn re-raises SIGTERM after its graceful shutdown: -15 is a clean exit too
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in (tmp_path / "ingest.log").read_text()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        log.close()
    assert len(acked) > 100
    assert answered_after_term > 0, "SIGTERM came when no request was in flight"
    stored = read_all(bootstrap, "likes")
    for event_id, (partition, offset) in acked.items():
        msg = stored.get((partition, offset))
        assert msg is not None, (event_id, partition, offset)
        assert decode_value(msg.value())["event_id"] == event_id


async def _load_then_sigterm(
    server: subprocess.Popen[bytes], base_url: str
) -> tuple[dict[str, tuple[int, int]], int]:
    """32 concurrent posters; SIGTERM once 200 were acknowledged; returns the 202s and how
    many came after it."""
    acked: dict[str, tuple[int, int]] = {}
    term_sent_at: list[float] = []
    after_term = 0
    async with httpx.AsyncClient(base_url=base_url, timeout=15) as http:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if (await http.get("/healthz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, "ingest exited during start-up"
            await asyncio.sleep(0.2)

        async def poster() -> None:
            nonlocal after_term
            while True:
                event_id = str(uuid.uuid4())
                try:
                    response = await http.post("/v1/events/likes", json=like(event_id=event_id))
                except httpx.TransportError:
                    return  # the server closed: load ends
                if response.status_code == 202:
                    body = response.json()
                    acked[event_id] = (body["partition"], body["offset"])
                    if term_sent_at:
                        after_term += 1
                elif response.status_code != 503:
                    raise AssertionError(response.text)

        async def terminate() -> None:
            # Under load, not after a fixed time: a loaded machine may ack slowly at first.
            load_deadline = time.monotonic() + 30
            while len(acked) < 200 and time.monotonic() < load_deadline:
                await asyncio.sleep(0.05)
            term_sent_at.append(time.monotonic())
            server.send_signal(signal.SIGTERM)

        await asyncio.wait_for(asyncio.gather(terminate(), *(poster() for _ in range(32))), 60)
    return acked, after_term
