"""Binary ingest against a real broker: events posted Avro single-object encoded, encoded
here from the `.avsc` files with fastavro alone (as an outside team would), not our codec."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME
from fastapi.testclient import TestClient
from fastavro.schema import fingerprint, to_parsing_canonical_form

from ingest_api.app import create_app
from logstream.settings import Settings
from tests.integration.test_ingest_api import (
    assert_error,
    decode_value,
    end_offsets,
    read_all,
    read_at,
)

REPO = Path(__file__).resolve().parents[2]
AVRO = {"Content-Type": "avro/binary"}
AVRO_BATCH = {"Content-Type": "application/vnd.logstream.avro-batch"}
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def schema(version: int) -> dict[str, Any]:
    return json.loads((REPO / "avro_schemas" / f"like.v{version}.avsc").read_text())


def single_object(version: int, record: dict[str, Any]) -> bytes:
    """C3 01 + CRC-64-AVRO fingerprint (little-endian) + Avro body, from the .avsc alone."""
    parsed = fastavro.parse_schema(schema(version))
    out = BytesIO()
    out.write(
        b"\xc3\x01" + bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
    )
    fastavro.schemaless_writer(out, parsed, record)
    return out.getvalue()


def framed(*events: bytes) -> bytes:
    """The batch body: each event as an Avro `bytes` value (long length, then the bytes)."""
    out = BytesIO()
    for event in events:
        fastavro.schemaless_writer(out, "bytes", event)
    return out.getvalue()


def like(i: int = 0, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "url": f"https://example.com/bin/{i}",
        "user_id": f"u{i}",
        "occurred_at": T0 + i,
        **fields,
    }


@pytest.fixture
def topic(make_topic) -> str:
    return make_topic(partitions=3, prefix="likes")


@pytest.fixture
def client(settings: Settings, topic: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings, topic_overrides={"like": topic})) as c:
        yield c


def limited(settings: Settings, topic: str, **limits: int) -> TestClient:
    return TestClient(
        create_app(settings.model_copy(update=limits), topic_overrides={"like": topic})
    )


# ----- accepted: v1 and v2 writers, single and batch -------------------------------------------
def test_v1_event_is_written_with_the_latest_version(client, topic, kafka_bootstrap):
    event = like(1)
    response = client.post("/v1/events/likes", content=single_object(1, event), headers=AVRO)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["event_id"] == event["event_id"] and body["topic"] == topic
    msg = read_at(kafka_bootstrap, topic, body["partition"], body["offset"])
    latest = fastavro.parse_schema(schema(2))
    assert msg.value()[2:10].hex() == fingerprint(to_parsing_canonical_form(latest), "CRC-64-AVRO")
    assert decode_value(msg.value()) == {**event, "referrer": None}
    assert msg.key() == event["url"].encode()
    assert msg.timestamp() == (TIMESTAMP_CREATE_TIME, event["occurred_at"])


def test_v2_event_is_written_byte_for_byte(client, topic, kafka_bootstrap):
    posted = single_object(2, like(2, referrer="https://r.example/"))
    response = client.post("/v1/events/likes", content=posted, headers=AVRO)
    assert response.status_code == 202, response.text
    body = response.json()
    assert read_at(kafka_bootstrap, topic, body["partition"], body["offset"]).value() == posted


def test_batch_of_mixed_versions_every_event_at_its_place(client, topic, kafka_bootstrap):
    events = [like(i) for i in range(30)]
    bodies = [single_object(1 + i % 2, e) for i, e in enumerate(events)]
    response = client.post("/v1/events/likes/batch", content=framed(*bodies), headers=AVRO_BATCH)
    assert response.status_code == 202, response.text
    result = response.json()
    assert result["accepted"] == 30
    stored = read_all(kafka_bootstrap, topic)
    for i, entry in enumerate(result["events"]):
        assert (entry["index"], entry["status"]) == (i, "written")
        msg = stored[(entry["partition"], entry["offset"])]
        assert decode_value(msg.value()) == {**events[i], "referrer": None}
        assert msg.key() == events[i]["url"].encode()
        assert msg.timestamp() == (TIMESTAMP_CREATE_TIME, events[i]["occurred_at"])


# ----- rejected: nothing written -----------------------------------------------------------------
def test_unknown_fingerprint_is_422_naming_it(client, topic, kafka_bootstrap):
    before = end_offsets(kafka_bootstrap, topic)
    data = b"\xc3\x01" + bytes.fromhex("0123456789abcdef") + single_object(2, like())[10:]
    error = assert_error(
        client.post("/v1/events/likes", content=data, headers=AVRO), 422, "validation_failed"
    )
    assert "0123456789abcdef" in error["fields"][0]["message"]
    batch = framed(single_object(2, like(1)), data)
    error = assert_error(
        client.post("/v1/events/likes/batch", content=batch, headers=AVRO_BATCH),
        422,
        "validation_failed",
    )
    assert [f["index"] for f in error["fields"]] == [1]
    assert "0123456789abcdef" in error["fields"][0]["message"]
    assert end_offsets(kafka_bootstrap, topic) == before


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage that is not avro",
        b"\xc3\x01\xbc",  # shorter than the header
        single_object(2, like())[:-3],  # body cut short
        single_object(2, like()) + b"\x00",  # trailing byte
    ],
    ids=["empty", "garbage", "short", "truncated", "trailing"],
)
def test_undecodable_bytes_are_400_malformed_avro(client, data):
    assert_error(client.post("/v1/events/likes", content=data, headers=AVRO), 400, "malformed_avro")


def test_batch_framing_and_bad_events_are_400_naming_the_index(client, topic, kafka_bootstrap):
    before = end_offsets(kafka_bootstrap, topic)
    good = single_object(2, like())
    error = assert_error(
        client.post(
            "/v1/events/likes/batch", content=framed(good, b"junk", good), headers=AVRO_BATCH
        ),
        400,
        "malformed_avro",
    )
    assert [f["index"] for f in error["fields"]] == [1]
    for body in (framed(good)[:-1], b"\x80" * 11, b"\x01"):  # past the end, no end, negative
        assert_error(
            client.post("/v1/events/likes/batch", content=body, headers=AVRO_BATCH),
            400,
            "malformed_avro",
        )
    assert_error(
        client.post("/v1/events/likes/batch", content=b"", headers=AVRO_BATCH),
        422,
        "validation_failed",
    )
    assert end_offsets(kafka_bootstrap, topic) == before


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"url": " "}, "url"),
        ({"user_id": "x" * 513}, "user_id"),
        ({"event_id": "not-a-uuid"}, "event_id"),
        ({"occurred_at": -5}, "occurred_at"),
        ({"occurred_at": 10**13 * 10}, "occurred_at"),  # far in the future
        ({"url": "https://victim.example/\x00a"}, "url"),  # control characters (issue 11)
        ({"user_id": "u\x1b[2J"}, "user_id"),
    ],
)
def test_same_field_rules_as_json(client, fields, field):
    event = like(**fields)
    error = assert_error(
        client.post("/v1/events/likes", content=single_object(2, event), headers=AVRO),
        422,
        "validation_failed",
    )
    assert [f.get("field") for f in error["fields"]] == [field]
    batch = framed(single_object(1, like()), single_object(2, event))
    error = assert_error(
        client.post("/v1/events/likes/batch", content=batch, headers=AVRO_BATCH),
        422,
        "validation_failed",
    )
    assert [(f["index"], f.get("field")) for f in error["fields"]] == [(1, field)]


def test_occurred_at_within_max_future_is_accepted(client, settings):
    soon = int(time.time() * 1000) + settings.ingest_max_future_ms // 2
    data = single_object(2, like(occurred_at=soon))
    assert client.post("/v1/events/likes", content=data, headers=AVRO).status_code == 202


# ----- limits and media types -------------------------------------------------------------------
def test_limits_are_413(settings, topic, kafka_bootstrap):
    before = end_offsets(kafka_bootstrap, topic)
    events = [single_object(2, like(i)) for i in range(4)]
    with limited(settings, topic, ingest_max_batch_events=3) as c:
        error = assert_error(
            c.post("/v1/events/likes/batch", content=framed(*events), headers=AVRO_BATCH),
            413,
            "too_many_events",
        )
        assert "LOGSTREAM_INGEST_MAX_BATCH_EVENTS" in error["message"]
    big = single_object(2, like(user_id="x" * 500))
    with limited(settings, topic, ingest_max_body_bytes=len(big) - 1) as c:
        assert_error(
            c.post("/v1/events/likes", content=big, headers=AVRO), 413, "payload_too_large"
        )
        assert_error(
            c.post("/v1/events/likes/batch", content=framed(big), headers=AVRO_BATCH),
            413,
            "payload_too_large",
        )
    assert end_offsets(kafka_bootstrap, topic) == before


def test_each_route_names_its_binary_media_type(client):
    one = single_object(2, like())
    error = assert_error(
        client.post("/v1/events/likes/batch", content=one, headers=AVRO),
        415,
        "unsupported_media_type",
    )
    assert "application/vnd.logstream.avro-batch" in error["message"]
    error = assert_error(
        client.post("/v1/events/likes", content=framed(one), headers=AVRO_BATCH),
        415,
        "unsupported_media_type",
    )
    assert "avro/binary" in error["message"]
