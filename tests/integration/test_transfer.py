"""Re-queue old data: export -> import into a fresh topic gives the same views, keys and times."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import fastavro
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from consumers import VIEWS
from logstream.codec import Codec
from logstream.runtime import ViewRunner
from logstream.schemas import SchemaCatalogue
from logstream.settings import Settings
from logstream.stores.factory import open_view_store
from tests.integration.likes import (
    BASE_MS,
    DAY_MS,
    assert_views_match,
    expected_views,
    generate_likes,
    produce_likes,
)


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(SchemaCatalogue.load(Settings().resolved_schema_dir))


def cli(bootstrap: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real `logstream` command against the session broker."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")},
        "LOGSTREAM_BOOTSTRAP_SERVERS": bootstrap,
        "LOGSTREAM_DATA_DIR": str(tmp_path / "cli-data"),
    }
    return subprocess.run(
        [sys.executable, "-m", "logstream", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def read_topic(bootstrap: str, topic: str, codec: Codec) -> dict[str, tuple[bytes, int]]:
    """event_id -> (key, Kafka timestamp) of every message of `topic`."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "read-all", "enable.auto.commit": False}
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p))[1] for p in parts}
        consumer.assign([TopicPartition(topic, p, 0) for p in parts if ends[p] > 0])
        left = {p for p in parts if ends[p] > 0}
        seen: dict[str, tuple[bytes, int]] = {}
        while left:
            for msg in consumer.consume(1000, timeout=1):
                assert msg.error() is None, msg.error()
                _, event = codec.decode(msg.value())
                seen[event["event_id"]] = (msg.key(), msg.timestamp()[1])
                if msg.offset() + 1 >= ends[msg.partition()]:
                    left.discard(msg.partition())
        return seen
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "ends"})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p))[1] for p in parts}
    finally:
        consumer.close()


def build_views(settings: Settings, codec: Codec, topic: str, group: str) -> dict[str, Any]:
    stores = {}
    for name, view in VIEWS.items():
        store = open_view_store(None, settings.data_dir, view)
        result = ViewRunner(
            settings,
            view,
            store,
            codec,
            topics=(topic,),
            group_id=f"{name}-{group}",
            until_caught_up=True,
        ).run()
        assert result.caught_up
        stores[name] = store
    return stores


def export_records(path: Path) -> list[dict[str, Any]]:
    with path.open("rb") as f:
        return [cast(dict[str, Any], r) for r in fastavro.reader(f)]


def test_export_import_gives_equal_views_keys_and_times(
    kafka_bootstrap, make_topic, codec, tmp_path, unique_name
):
    source = make_topic(partitions=6, prefix="likes-a")
    target = make_topic(partitions=4, prefix="likes-b")  # another layout: views still equal
    events = generate_likes(5_000, seed=21)  # 10% late events, up to two days old
    produce_likes(kafka_bootstrap, source, events, codec)

    dump = tmp_path / "likes.avro"
    exported = cli(kafka_bootstrap, tmp_path, "export", source, "-o", str(dump))
    assert exported.returncode == 0, exported.stderr
    assert "exported 5000 event(s)" in exported.stdout
    assert not dump.with_name("likes.avro.partial").exists()
    imported = cli(kafka_bootstrap, tmp_path, "import", str(dump), "--topic", target)
    assert imported.returncode == 0, imported.stderr
    assert f"imported 5000 like event(s) from {dump} (avro) into {target}" in imported.stdout

    original = read_topic(kafka_bootstrap, source, codec)
    requeued = read_topic(kafka_bootstrap, target, codec)
    assert len(original) == 5_000
    assert requeued == original  # same event ids, keys and Kafka timestamps

    views_a = build_views(
        Settings(bootstrap_servers=kafka_bootstrap, data_dir=tmp_path / "a"),
        codec,
        source,
        unique_name("a"),
    )
    views_b = build_views(
        Settings(bootstrap_servers=kafka_bootstrap, data_dir=tmp_path / "b"),
        codec,
        target,
        unique_name("b"),
    )
    for name in VIEWS:
        a, b = views_a[name], views_b[name]
        assert a.totals_rows() == b.totals_rows(), name
        assert a.bucket_rows() == b.bucket_rows(), name
        assert a.bucket_rows(), name
    assert_views_match(views_b, expected_views(events))
    for store in [*views_a.values(), *views_b.values()]:
        store.close()


def test_since_until_export_exactly_the_slice_and_skips_poison(
    kafka_bootstrap, make_topic, codec, tmp_path
):
    topic = make_topic(partitions=3, prefix="likes")
    events = generate_likes(3_000, seed=8)
    produce_likes(kafka_bootstrap, topic, events[:1500], codec)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(
        topic, key=b"k", value=b"garbage, not avro at all", timestamp=BASE_MS + DAY_MS + 1
    )
    assert producer.flush(30) == 0
    produce_likes(kafka_bootstrap, topic, events[1500:], codec)

    since, until = BASE_MS + DAY_MS, BASE_MS + 2 * DAY_MS + 12 * 3_600_000
    wanted = {e["event_id"] for e in events if since <= e["occurred_at"] < until}
    assert 0 < len(wanted) < len(events)
    assert any(e["occurred_at"] < since for e in events[1500:])  # late events after `since`

    dump = tmp_path / "slice.avro"
    done = cli(
        kafka_bootstrap,
        tmp_path,
        "export",
        topic,
        "--since",
        "2026-01-02T00:00:00Z",
        "--until",
        str(until),
        "--output",
        str(dump),
    )
    assert done.returncode == 0, done.stderr
    assert f"exported {len(wanted)} event(s)" in done.stdout
    assert "1 undecodable" in done.stdout
    assert "not Avro single-object encoding" in done.stderr
    records = export_records(dump)
    assert {str(r["event"]["event_id"]) for r in records} == wanted
    assert all(since <= r["timestamp_ms"] < until for r in records)
    assert all(r["key"] == r["event"]["url"].encode() for r in records)


def test_ndjson_with_a_bad_line_produces_nothing_then_imports_when_fixed(
    kafka_bootstrap, make_topic, codec, tmp_path
):
    topic = make_topic(partitions=3, prefix="likes")
    events = generate_likes(200, seed=4)
    lines = [
        json.dumps(
            {
                "url": e["url"],
                "user_id": e["user_id"],
                "occurred_at": e["occurred_at"] if i % 2 else _rfc3339(e["occurred_at"]),
                "event_id": e["event_id"],
            }
        )
        for i, e in enumerate(events)
    ]
    good_line_57 = lines[56]
    lines[56] = json.dumps({"url": "https://e.com/x", "user_id": "u", "occurred_at": "noon"})
    path = tmp_path / "likes.ndjson"
    path.write_text("\n".join(lines) + "\n")

    failed = cli(kafka_bootstrap, tmp_path, "import", str(path), "--topic", topic)
    assert failed.returncode == 1
    assert "1 invalid record(s); nothing was produced" in failed.stderr
    assert "line 57: occurred_at:" in failed.stderr
    assert sum(end_offsets(kafka_bootstrap, topic).values()) == 0

    lines[56] = good_line_57
    path.write_text("\n".join(lines) + "\n")
    done = cli(kafka_bootstrap, tmp_path, "import", str(path), "--topic", topic)
    assert done.returncode == 0, done.stderr
    got = read_topic(kafka_bootstrap, topic, codec)
    assert got == {e["event_id"]: (e["url"].encode(), e["occurred_at"]) for e in events}


def test_import_into_a_missing_topic_fails_before_producing(kafka_bootstrap, tmp_path, unique_name):
    path = tmp_path / "one.ndjson"
    path.write_text(json.dumps({"url": "u", "user_id": "x", "occurred_at": BASE_MS}) + "\n")
    missing = unique_name("nope")
    done = cli(kafka_bootstrap, tmp_path, "import", str(path), "--topic", missing)
    assert done.returncode == 1
    assert f"topic {missing!r} does not exist" in done.stderr


def _rfc3339(ms: int) -> str:
    from datetime import UTC, datetime

    moment = datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{moment}.{ms % 1000:03d}Z"
