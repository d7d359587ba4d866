"""`logstream topics create` makes every event topic and its DLQ, forever-retained, once."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from confluent_kafka.admin import AdminClient, ConfigResource


def test_topics_create_is_idempotent_and_retains_forever(kafka_bootstrap, unique_name):
    prefix = unique_name("tc") + "."
    env = {
        **os.environ,
        "LOGSTREAM_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LOGSTREAM_TOPIC_PREFIX": prefix,
    }
    command = [sys.executable, "-m", "logstream", "topics", "create", "--partitions", "4"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert f"{prefix}likes: created" in first.stdout
    assert f"{prefix}likes.dlq: created" in first.stdout
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"{prefix}likes: exists" in again.stdout
    # Existing topics keep their own partition count: asking for more waits for nothing.
    more = [*command[:-1], "12"]
    started = time.monotonic()
    bigger = subprocess.run(more, env=env, capture_output=True, text=True, timeout=120)
    assert bigger.returncode == 0, bigger.stderr
    assert f"{prefix}likes: exists" in bigger.stdout
    assert time.monotonic() - started < 20

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    metadata = admin.list_topics(timeout=10)
    assert len(metadata.topics[f"{prefix}likes"].partitions) == 4
    resource = ConfigResource(ConfigResource.Type.TOPIC, f"{prefix}likes")
    config = admin.describe_configs([resource])[resource].result(timeout=30)
    assert config["retention.ms"].value == "-1"
    assert config["message.timestamp.type"].value == "CreateTime"


def test_unknown_setting_is_one_clear_line(kafka_bootstrap):
    env = {**os.environ, "LOGSTREAM_BOOTSTRAP_SERVER": kafka_bootstrap}  # typo: no S
    result = subprocess.run(
        [sys.executable, "-m", "logstream", "topics", "create"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: unknown setting(s) LOGSTREAM_BOOTSTRAP_SERVER: see README, Configuration"
    ]


def test_lag_reports_unapplied_events_per_partition(kafka_bootstrap, unique_name, tmp_path):
    import json

    from confluent_kafka import Producer

    prefix = unique_name("lag") + "."
    env = {
        **os.environ,
        "LOGSTREAM_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LOGSTREAM_TOPIC_PREFIX": prefix,
        "LOGSTREAM_DATA_DIR": str(tmp_path),
    }
    cli = [sys.executable, "-m", "logstream"]
    assert (
        subprocess.run(
            [*cli, "topics", "create", "--partitions", "2"], env=env, timeout=120
        ).returncode
        == 0
    )
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(5):
        producer.produce(f"{prefix}likes", value=b"x", partition=i % 2)
    assert producer.flush(30) == 0
    result = subprocess.run(
        [*cli, "lag", "likes-by-url", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["partition"], r["lag"], r["stored_offset"]) for r in rows] == [
        (0, 3, None),
        (1, 2, None),
    ]
    assert {r["group"] for r in rows} == {"likes-by-url"}
