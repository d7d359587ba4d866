"""A new event type served from one `.avsc` alone, against a real broker: a schema folder in
tmp_path (named by LOGSTREAM_SCHEMA_DIR) gets its topics from `logstream topics create`, its
routes, validation, OpenAPI entry and contract, with no file of logstream edited.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, Consumer, TopicPartition
from fastapi.testclient import TestClient
from fastavro.schema import fingerprint, to_parsing_canonical_form

from ingest_api.app import create_app
from logstream.settings import Settings
from tests.integration.test_ingest_api import read_at
from tests.page_view import PAGE_VIEW

REPO = Path(__file__).resolve().parents[2]
VISITOR = "6f9619ff-8b86-d011-b42d-00cf4fc964ff"
TOPIC = "page_views"


@pytest.fixture(scope="module")
def deployment(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, str]]:
    """The schema folder holds page_view.v1.avsc only; topics made by the CLI, as a user
    would, under a unique prefix. Yields the settings and the deployed topic."""
    folder = tmp_path_factory.mktemp("schemas")
    (folder / "page_view.v1.avsc").write_text(json.dumps(PAGE_VIEW, indent=2))
    prefix = f"et-{uuid.uuid4().hex[:8]}."
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")},
        "LOGSTREAM_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LOGSTREAM_TOPIC_PREFIX": prefix,
        "LOGSTREAM_SCHEMA_DIR": str(folder),
    }
    command = [sys.executable, "-m", "logstream", "topics", "create", "--partitions", "3"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == [
        f"{prefix}{TOPIC}: created",
        f"{prefix}{TOPIC}.dlq: created",
    ]
    assert "likes" not in result.stdout  # the folder is the catalogue: no like here
    settings = Settings(bootstrap_servers=kafka_bootstrap, schema_dir=folder, topic_prefix=prefix)
    yield settings, prefix + TOPIC


@pytest.fixture(scope="module")
def client(deployment: tuple[Settings, str]) -> Iterator[TestClient]:
    with TestClient(create_app(deployment[0])) as c:
        yield c


def view(**fields: Any) -> dict[str, Any]:
    event = {
        "url": "https://example.com/a",
        "visitor_id": VISITOR,
        "seconds": 12,
        "occurred_at": "2024-05-01T14:00:00.250+02:00",
        "page": {"title": "Home", "section": "NEWS"},
    }
    event.update(fields)
    return event


def decode(value: bytes) -> dict[str, Any]:
    """From the `.avsc` alone: check the header's fingerprint, decode the body."""
    schema = fastavro.parse_schema(json.loads(json.dumps(PAGE_VIEW)))
    expected = fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
    assert value[:2] == b"\xc3\x01" and value[2:10] == bytes.fromhex(expected)
    record = fastavro.schemaless_reader(BytesIO(value[10:]), schema)
    assert isinstance(record, dict)
    return record


def stored(bootstrap: str, topic: str, place: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    msg = read_at(bootstrap, topic, place["partition"], place["offset"])
    return msg, decode(msg.value())


def test_single_event_lands_with_key_timestamp_and_value(client, deployment, kafka_bootstrap):
    _, topic = deployment
    event_id = str(uuid.uuid4())
    posted = view(event_id=event_id, referrer="https://r.example/", tags=["x"], device="MOBILE")
    response = client.post(f"/v1/events/{TOPIC}", json=posted)

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["event_id"] == event_id and body["topic"] == topic
    msg, record = stored(kafka_bootstrap, topic, body)
    assert msg.key() == b"https://example.com/a"
    assert msg.timestamp() == (TIMESTAMP_CREATE_TIME, 1714564800250)
    assert int(record.pop("occurred_at").timestamp() * 1000) == 1714564800250
    assert record == {
        "event_id": uuid.UUID(event_id),
        "url": "https://example.com/a",
        "visitor_id": uuid.UUID(VISITOR),
        "seconds": 12,
        "referrer": "https://r.example/",
        "first_seen": None,
        "page": {"title": "Home", "referrer": None, "section": "NEWS"},
        "device": "MOBILE",
        "tags": ["x"],
        "metrics": {},
        "sections_seen": [],
        "checksum": None,
    }


def test_generated_event_id_and_epoch_millis(client, deployment, kafka_bootstrap):
    _, topic = deployment
    response = client.post(f"/v1/events/{TOPIC}", json=view(occurred_at=1_700_000_000_123))
    assert response.status_code == 202, response.text
    body = response.json()
    msg, record = stored(kafka_bootstrap, topic, body)
    assert str(record["event_id"]) == body["event_id"]
    assert uuid.UUID(body["event_id"]).version == 4
    assert msg.timestamp() == (TIMESTAMP_CREATE_TIME, 1_700_000_000_123)


@pytest.mark.parametrize("kind", ["json", "ndjson"])
def test_batches_every_event_at_its_returned_place(client, deployment, kafka_bootstrap, kind):
    _, topic = deployment
    events = [
        view(url=f"https://example.com/{i}", event_id=str(uuid.uuid4()), seconds=i)
        for i in range(6)
    ]
    if kind == "json":
        response = client.post(f"/v1/events/{TOPIC}/batch", json=events)
    else:
        text = "\n".join(json.dumps(e) for e in events) + "\n"
        response = client.post(
            f"/v1/events/{TOPIC}/batch",
            content=text,
            headers={"Content-Type": "application/x-ndjson"},
        )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == len(events)
    for i, result in enumerate(body["events"]):
        assert result["index"] == i and result["status"] == "written"
        assert result["event_id"] == events[i]["event_id"] and result["topic"] == topic
        msg, record = stored(kafka_bootstrap, topic, result)
        assert msg.key() == events[i]["url"].encode()
        assert str(record["event_id"]) == events[i]["event_id"] and record["seconds"] == i


def test_avro_binary_event_is_validated_and_written(client, deployment, kafka_bootstrap):
    _, topic = deployment
    schema = fastavro.parse_schema(json.loads(json.dumps(PAGE_VIEW)))
    header = b"\xc3\x01" + bytes.fromhex(
        fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
    )
    record = {
        "event_id": uuid.UUID(VISITOR),
        "url": "https://example.com/bin",
        "visitor_id": uuid.UUID(VISITOR),
        "seconds": 3,
        "occurred_at": 1_700_000_000_000,
        "page": {"title": "Bin", "section": "OTHER"},
        "checksum": b"\x00\x01\x02\x03",
    }
    out = BytesIO()
    fastavro.schemaless_writer(out, schema, record)
    response = client.post(
        f"/v1/events/{TOPIC}",
        content=header + out.getvalue(),
        headers={"Content-Type": "avro/binary"},
    )
    assert response.status_code == 202, response.text
    msg, decoded = stored(kafka_bootstrap, topic, response.json())
    assert msg.key() == b"https://example.com/bin"
    assert decoded["page"] == {"title": "Bin", "referrer": None, "section": "OTHER"}
    assert decoded["checksum"] == b"\x00\x01\x02\x03"


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


def test_invalid_events_get_field_level_422_and_nothing_is_written(
    client, deployment, kafka_bootstrap
):
    _, topic = deployment
    before = end_offsets(kafka_bootstrap, topic)
    single = client.post(
        f"/v1/events/{TOPIC}",
        json=view(page={"title": "T", "section": "MUSIC", "referrer": 5}, visitor_id="nope"),
    )
    assert single.status_code == 422, single.text
    error = single.json()["error"]
    assert error["code"] == "validation_failed"
    assert {f["field"] for f in error["fields"]} == {
        "visitor_id",
        "page.section",
        "page.referrer",
    }

    events = [view(), view(tags=["a", 7]), view(occurred_at="2024-05-01T12:00:00"), view()]
    batch = client.post(f"/v1/events/{TOPIC}/batch", json=events)
    assert batch.status_code == 422, batch.text
    named = {(f["index"], f["field"]) for f in batch.json()["error"]["fields"]}
    assert named == {(1, "tags.1"), (2, "occurred_at")}

    client.app.state.ingest.producer.flush(10)  # had anything been enqueued, it is out now
    assert end_offsets(kafka_bootstrap, topic) == before


def test_unknown_type_404_names_the_catalogue_routes(client):
    response = client.post("/v1/events/likes", json={"url": "u", "user_id": "u"})
    assert response.status_code == 404
    assert f"/v1/events/{TOPIC}" in response.json()["error"]["message"]


def test_openapi_lists_the_routes_with_the_json_schema(client):
    spec = client.get("/openapi.json").json()
    single = spec["paths"][f"/v1/events/{TOPIC}"]["post"]
    schema = single["requestBody"]["content"]["application/json"]["schema"]
    assert schema["title"] == "PageviewCreate"
    assert set(schema["required"]) == {"url", "visitor_id", "seconds", "page"}
    assert schema["properties"]["page"]["properties"]["section"]["enum"] == [
        "NEWS",
        "SPORT",
        "OTHER",
    ]
    assert "avro/binary" in single["requestBody"]["content"]
    batch = spec["paths"][f"/v1/events/{TOPIC}/batch"]["post"]["requestBody"]["content"]
    assert batch["application/json"]["schema"]["items"] == schema
    assert set(batch) == {
        "application/json",
        "application/x-ndjson",
        "application/vnd.logstream.avro-batch",
    }
    assert "/v1/events/likes" not in spec["paths"]


def test_contract_documents_cover_the_new_type(client, deployment):
    _, topic = deployment
    types = {t["event_type"]: t for t in client.get("/v1/schemas").json()["event_types"]}
    assert set(types) == {"pageview"}
    page_view = types["pageview"]
    assert (page_view["topic"], page_view["dlq_topic"]) == (topic, f"{topic}.dlq")
    assert (page_view["key_field"], page_view["timestamp_field"]) == ("url", "occurred_at")
    channels = client.get("/asyncapi.json").json()["channels"]
    assert channels[TOPIC]["address"] == topic
    assert channels[f"{TOPIC}_dlq"]["address"] == f"{topic}.dlq"


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_fuzzed_requests_to_the_new_type_never_get_5xx(deployment, mode):
    """Schemathesis cases from the OpenAPI entry derived from the `.avsc` (nested record,
    enum, arrays, maps, fixed): whatever the spec lets a client send is answered 2xx/4xx."""
    import schemathesis
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hypothesis_settings
    from schemathesis import GenerationMode

    app = create_app(deployment[0])
    with TestClient(app):
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        strategy = schema.include(path_regex="^/v1/events/").as_strategy(
            generation_mode=GenerationMode(mode)
        )
        seen: list[int] = []

        @given(case=strategy)
        @hypothesis_settings(
            max_examples=60, deadline=None, suppress_health_check=list(HealthCheck)
        )
        def never_5xx(case: Any) -> None:
            response = case.call()
            seen.append(response.status_code)
            assert response.status_code < 500, (case.path, case.body, response.text)

        never_5xx()
    assert len(seen) >= 30
    if mode == "positive":
        assert any(code == 202 for code in seen)
    else:
        assert any(400 <= code < 500 for code in seen)
