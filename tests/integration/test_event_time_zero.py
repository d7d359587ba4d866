"""Event time 0 (1970-01-01T00:00:00Z) is never logged as "now".

librdkafka stamps a produce timestamp of 0 with the current time, so an event at 0 is
written with Kafka's "no timestamp" (-1) and its `occurred_at` of 0 in the value
(`logstream.kafka.timestamps`). These tests read the raw records back: ingest, import and
the dead-letter path all keep that, and `event_time` turns it back into 0.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from confluent_kafka import TIMESTAMP_CREATE_TIME, Consumer, Producer, TopicPartition

from logstream.codec import Codec
from logstream.kafka.admin import TopicSpec, create_topics
from logstream.kafka.timestamps import event_time, record_timestamp
from logstream.runtime.dlq import DeadLetters
from logstream.schemas import SchemaCatalogue
from logstream.settings import Settings
from tests.integration.test_ingest_api import decode_value, read_all, read_at, running_app


def assert_epoch_zero(msg, occurred_at: int = 0) -> None:
    ts_type, ts = msg.timestamp()
    assert ts_type == TIMESTAMP_CREATE_TIME, msg.timestamp()
    assert ts == -1, f"record timestamp {ts}: stamped with the produce time"
    assert event_time(ts, occurred_at) == 0


def test_record_timestamp_mapping():
    assert record_timestamp(0) == -1
    assert record_timestamp(1) == 1
    assert record_timestamp(1_714_564_800_250) == 1_714_564_800_250
    assert event_time(-1, 0) == 0
    assert event_time(1_714_564_800_250, 1_714_564_800_250) == 1_714_564_800_250


def test_ingest_writes_event_time_zero_not_now(settings: Settings, make_topic, kafka_bootstrap):
    topic = make_topic(partitions=3, prefix="likes")
    with running_app(settings, topic) as client:
        single = client.post(
            "/v1/events/likes", json={"url": "https://e/0", "user_id": "u", "occurred_at": 0}
        )
        batch = client.post(
            "/v1/events/likes/batch",
            json=[
                {"url": "https://e/1", "user_id": "u", "occurred_at": "1970-01-01T00:00:00Z"},
                {"url": "https://e/2", "user_id": "u", "occurred_at": 1},
            ],
        )
    assert single.status_code == 202 and batch.status_code == 202, (single.text, batch.text)
    at = [single.json()] + batch.json()["events"]
    msgs = [read_at(kafka_bootstrap, topic, a["partition"], a["offset"]) for a in at]
    for msg in msgs[:2]:
        assert decode_value(msg.value())["occurred_at"] == 0
        assert_epoch_zero(msg)
    assert msgs[2].timestamp() == (TIMESTAMP_CREATE_TIME, 1)  # 1 ms is written as it is


def test_import_and_dead_letters_keep_event_time_zero(
    settings: Settings, make_topic, admin, kafka_bootstrap, tmp_path: Path
):
    from logstream.cli.transfer import like_rule
    from logstream.transfer.importer import import_file

    topic = make_topic(partitions=1, prefix="likes")
    codec = Codec(SchemaCatalogue.load(settings.resolved_schema_dir))
    lines = tmp_path / "old.ndjson"
    lines.write_text(json.dumps({"url": "https://e/i", "user_id": "u", "occurred_at": 0}) + "\n")
    result = import_file(
        settings, codec, lines, topic=topic, rules={"like": like_rule(settings, codec)}
    )
    assert result.produced == 1
    (imported,) = read_all(kafka_bootstrap, topic).values()
    assert_epoch_zero(imported)

    # A poison message with no timestamp goes to the DLQ with none, not with "now".
    create_topics(admin, [TopicSpec(f"{topic}.dlq", 1, 1, {})], timeout_s=60)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, value=b"not avro", key=b"k", timestamp=record_timestamp(0))
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"z-{uuid.uuid4()}"})
    try:
        consumer.assign([TopicPartition(topic, 0, 1)])
        deadline, poison = time.monotonic() + 20, None
        while poison is None and time.monotonic() < deadline:
            poison = consumer.poll(0.5)
        assert poison is not None and poison.error() is None
    finally:
        consumer.close()
    dead = DeadLetters(settings, "likes-by-url")
    dead.send(poison, ValueError("not avro"))
    dead.flush(30)
    (letter,) = read_all(kafka_bootstrap, f"{topic}.dlq").values()
    assert_epoch_zero(letter)
    assert dict(letter.headers())["logstream.origin.timestamp"] == b"-1"


def test_views_count_event_time_zero_in_1970(settings: Settings, make_topic, tmp_path: Path):
    from tests.integration.test_views_exact import build_all

    topic = make_topic(partitions=1, prefix="likes")
    with running_app(settings, topic) as client:
        posted = client.post(
            "/v1/events/likes", json={"url": "https://e/z", "user_id": "u", "occurred_at": 0}
        )
    assert posted.status_code == 202
    codec = Codec(SchemaCatalogue.load(settings.resolved_schema_dir))
    own = settings.model_copy(update={"data_dir": tmp_path})
    stores = build_all(own, codec, topic, uuid.uuid4().hex[:8])
    total = stores["likes-by-url"].total("url", "https://e/z")
    assert (total.count, total.first_ms, total.last_ms) == (1, 0, 0)
