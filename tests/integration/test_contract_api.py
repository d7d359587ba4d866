"""`GET /v1/schemas` and `GET /asyncapi.json` describe what this ingest really writes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from fastapi.testclient import TestClient

from ingest_api.app import create_app
from logstream.settings import Settings
from tests.integration.test_ingest_api import read_at

REPO = Path(__file__).resolve().parents[2]
ASYNCAPI_SCHEMA = REPO / "tests" / "contract" / "asyncapi-3.0.0.schema.json"


@pytest.fixture
def topic(make_topic) -> str:
    return make_topic(partitions=3, prefix="likes")


@pytest.fixture
def client(settings: Settings, topic: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings, topic_overrides={"like": topic})) as c:
        yield c


def test_schemas_route_names_the_real_topic_and_the_written_header(client, topic, kafka_bootstrap):
    response = client.get("/v1/schemas")
    assert response.status_code == 200, response.text
    (like,) = response.json()["event_types"]
    assert (like["topic"], like["dlq_topic"]) == (topic, f"{topic}.dlq")
    assert (like["key_field"], like["timestamp_field"]) == ("url", "occurred_at")
    latest = like["versions"][-1]
    assert latest["version"] == like["latest_version"]

    posted = client.post("/v1/events/likes", json={"url": "https://e.com/c", "user_id": "u"})
    assert posted.status_code == 202, posted.text
    msg = read_at(kafka_bootstrap, topic, posted.json()["partition"], posted.json()["offset"])
    assert msg.value()[:10].hex() == latest["header"]
    assert msg.key() == b"https://e.com/c"


def test_asyncapi_route_is_valid_and_names_the_real_topic(client, topic, settings):
    response = client.get("/asyncapi.json")
    assert response.status_code == 200, response.text
    document = response.json()
    validator = jsonschema.Draft7Validator(json.loads(ASYNCAPI_SCHEMA.read_text()))
    assert [e.message for e in validator.iter_errors(document)] == []
    assert document["channels"]["likes"]["address"] == topic
    assert document["channels"]["likes_dlq"]["address"] == f"{topic}.dlq"
    hosts = [s["host"] for s in document["servers"].values()]
    assert hosts == settings.bootstrap_servers.split(",")
