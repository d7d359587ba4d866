"""Every producer logstream runs puts a key where Java's default partitioner puts it.

Expectation: `tests/java_partitioner.py`, a port of `Utils.toPositive(Utils.murmur2(key)) %
partitions`, checked here against the real kafka-clients jar of the test broker. Measured:
the partition the broker reports for messages written by ingest (single, JSON batch,
binary batch), by `logstream import`, and by the dead-letter producer.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from fastapi.testclient import TestClient

from ingest_api.app import create_app
from logstream.broker.assemble import ensure_kafka_runtime
from logstream.errors import CorruptMessageError
from logstream.kafka.admin import TopicSpec, create_topics
from logstream.runtime.dlq import DeadLetters
from logstream.settings import Settings
from logstream.topics import dlq_topic
from tests.integration.test_binary_ingest import framed, single_object
from tests.java_partitioner import java_partition, murmur2

PARTITIONS = 7  # prime: a partitioner that only agrees modulo 2 or 3 is caught
BASE_MS = 1_767_225_600_000

# Every tail length of murmur2 (len % 4), multi-byte UTF-8, long keys.
KEYS = [
    *(f"https://example.com/{i}" for i in range(40)),
    "a",
    "ab",
    "abc",
    "abcd",
    "https://例え.jp/ページ?q=ü",
    "https://example.com/" + "x" * 1500,
]

_JAVA_MURMUR = """
import org.apache.kafka.common.utils.Utils;
import java.io.*;
import java.util.HexFormat;

public class Murmur {
    public static void main(String[] args) throws IOException {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line;
        while ((line = in.readLine()) != null) {
            System.out.println(Utils.murmur2(HexFormat.of().parseHex(line.trim())));
        }
    }
}
"""


# ----- helpers --------------------------------------------------------------------------------
def read_all(bootstrap: str, topic: str, expected: int) -> list[Message]:
    """The first `expected` messages of `topic`, from every partition (deadline 60 s)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        found: list[Message] = []
        deadline = time.monotonic() + 60
        while len(found) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                assert msg.error() is None, msg.error()
                found.append(msg)
        assert len(found) == expected, f"{len(found)} of {expected} messages in {topic}"
        return found
    finally:
        consumer.close()


def assert_java_placement(messages: list[Message], partitions: int) -> None:
    """Each message sits in the partition Java computes from its key."""
    assert messages
    misplaced = [
        (m.key(), m.partition(), java_partition(m.key(), partitions))
        for m in messages
        if m.partition() != java_partition(m.key(), partitions)
    ]
    assert misplaced == []
    assert len({m.partition() for m in messages}) > 1  # the keys really spread


def like(url: str, i: int = 0) -> dict[str, Any]:
    return {
        "url": url,
        "user_id": f"u{i}",
        "occurred_at": BASE_MS + i,
        "event_id": str(uuid.uuid4()),
    }


@pytest.fixture
def topic(make_topic) -> str:
    return make_topic(partitions=PARTITIONS, prefix="likes")


@pytest.fixture
def client(settings: Settings, topic: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings, topic_overrides={"like": topic})) as c:
        yield c


# ----- the yardstick itself ---------------------------------------------------------------------
def test_port_agrees_with_the_kafka_clients_jar(tmp_path: Path) -> None:
    """The Python port and Java's own `Utils.murmur2` give the same int for every key."""
    java = shutil.which("java")
    if java is None:
        pytest.skip("no java on PATH (the local broker needs it too)")
    runtime = ensure_kafka_runtime(Settings().kafka_version, Settings().kafka_cache_dir)
    source = tmp_path / "Murmur.java"
    source.write_text(_JAVA_MURMUR)
    keys = [k.encode() for k in KEYS] + [b"", bytes(range(256)), b"\xff\x80\x00\x7f"]
    done = subprocess.run(
        [java, "-cp", runtime.classpath, str(source)],
        input="\n".join(k.hex() for k in keys) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert [int(line) for line in done.stdout.split()] == [murmur2(k) for k in keys]


# ----- ingest -----------------------------------------------------------------------------------
def test_ingest_json_and_binary_place_keys_as_java_does(client, topic, kafka_bootstrap):
    for i, url in enumerate(KEYS[:10]):
        response = client.post("/v1/events/likes", json=like(url, i))
        assert response.status_code == 202, response.text
        assert response.json()["partition"] == java_partition(url.encode(), PARTITIONS)
    batch = [like(url, i) for i, url in enumerate(KEYS)]
    response = client.post("/v1/events/likes/batch", json=batch)
    assert response.status_code == 202, response.text
    for event, result in zip(batch, response.json()["events"], strict=True):
        assert result["partition"] == java_partition(event["url"].encode(), PARTITIONS)
    binary = framed(*(single_object(2, like(url, i)) for i, url in enumerate(KEYS)))
    response = client.post(
        "/v1/events/likes/batch",
        content=binary,
        headers={"Content-Type": "application/vnd.logstream.avro-batch"},
    )
    assert response.status_code == 202, response.text
    for url, result in zip(KEYS, response.json()["events"], strict=True):
        assert result["partition"] == java_partition(url.encode(), PARTITIONS)
    # What the broker holds, not only what ingest reported.
    assert_java_placement(read_all(kafka_bootstrap, topic, 10 + 2 * len(KEYS)), PARTITIONS)


# ----- import -----------------------------------------------------------------------------------
def test_import_places_keys_as_java_does(kafka_bootstrap, topic, tmp_path):
    path = tmp_path / "likes.ndjson"
    path.write_text("".join(json.dumps(like(url, i)) + "\n" for i, url in enumerate(KEYS)))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")},
        "LOGSTREAM_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LOGSTREAM_DATA_DIR": str(tmp_path / "data"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "logstream", "import", str(path), "--topic", topic],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert_java_placement(read_all(kafka_bootstrap, topic, len(KEYS)), PARTITIONS)


# ----- dead letters -----------------------------------------------------------------------------
@pytest.fixture
def origin_with_wide_dlq(admin, unique_name) -> Iterator[str]:
    """An origin topic and a DLQ twin with several partitions (an operator may widen it)."""
    origin = unique_name("likes")
    create_topics(
        admin,
        [TopicSpec(origin, 2, 1, {}), TopicSpec(dlq_topic(origin), PARTITIONS, 1, {})],
        timeout_s=60,
    )
    yield origin
    for future in admin.delete_topics([origin, dlq_topic(origin)]).values():
        with contextlib.suppress(Exception):
            future.result(timeout=30)


def test_dead_letters_place_keys_as_java_does(settings, kafka_bootstrap, origin_with_wide_dlq):
    origin = origin_with_wide_dlq
    poison = Producer({"bootstrap.servers": kafka_bootstrap})
    for i, url in enumerate(KEYS):
        poison.produce(origin, key=url.encode(), value=b"not avro", partition=i % 2)
    assert poison.flush(30) == 0

    dead = DeadLetters(settings, "partitioning-test")
    for msg in read_all(kafka_bootstrap, origin, len(KEYS)):
        dead.send(msg, CorruptMessageError("bad magic"))
    dead.flush(30)

    assert_java_placement(read_all(kafka_bootstrap, dlq_topic(origin), len(KEYS)), PARTITIONS)
