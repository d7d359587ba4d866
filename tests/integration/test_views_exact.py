"""Every view is exact: from a generated stream, after SIGKILLs, with poison messages."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from consumers import VIEWS
from logstream.codec import Codec
from logstream.runtime import ViewRunner
from logstream.schemas import SchemaCatalogue
from logstream.settings import Settings
from logstream.stores.factory import open_view_store
from tests.integration.likes import (
    assert_views_match,
    expected_views,
    generate_likes,
    produce_likes,
)


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(SchemaCatalogue.load(Settings().resolved_schema_dir))


def open_stores(settings: Settings) -> dict:
    return {
        name: open_view_store(settings.store_url, settings.data_dir, v) for name, v in VIEWS.items()
    }


def build_all(settings: Settings, codec: Codec, topic: str, group_suffix: str) -> dict:
    stores = open_stores(settings)
    for name, view in VIEWS.items():
        result = ViewRunner(
            settings,
            view,
            stores[name],
            codec,
            topics=(topic,),
            group_id=f"{name}-{group_suffix}",
            until_caught_up=True,
        ).run()
        assert result.caught_up
    return stores


def test_generated_stream_gives_exact_views(
    kafka_bootstrap, make_topic, codec, tmp_path, unique_name
):
    topic = make_topic(partitions=6, prefix="likes")
    make_topic_dlq = f"{topic}.dlq"  # no poison here: the DLQ is never needed
    events = generate_likes(20_000, seed=11)
    produce_likes(kafka_bootstrap, topic, events, codec)
    settings = Settings(
        bootstrap_servers=kafka_bootstrap, data_dir=tmp_path, flush_max_keys=500
    )  # many small flushes
    stores = build_all(settings, codec, topic, unique_name("g"))
    assert_views_match(stores, expected_views(events))
    assert make_topic_dlq.endswith(".dlq")
    # Running again from the stored offsets adds nothing.
    stores = build_all(settings, codec, topic, unique_name("g"))
    assert_views_match(stores, expected_views(events))


def test_poison_messages_go_to_dlq_and_counts_stay_exact(
    kafka_bootstrap, make_topic, admin, codec, tmp_path, unique_name
):
    from logstream.kafka.admin import TopicSpec, create_topics

    topic = make_topic(partitions=3, prefix="likes")
    create_topics(admin, [TopicSpec(f"{topic}.dlq", 1, 1, {})], timeout_s=60)
    events = generate_likes(2_000, seed=5)
    produce_likes(kafka_bootstrap, topic, events[:1000], codec)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    unknown = b"\xc3\x01" + b"\x00" * 8 + b"\x02x"
    producer.produce(topic, key=b"k", value=b"garbage bytes", partition=0)
    producer.produce(topic, key=b"k", value=unknown, partition=1)
    producer.flush(30)
    produce_likes(kafka_bootstrap, topic, events[1000:], codec)

    settings = Settings(bootstrap_servers=kafka_bootstrap, data_dir=tmp_path)
    view = VIEWS["likes-by-url"]
    store = open_view_store(None, tmp_path, view)
    result = ViewRunner(
        settings,
        view,
        store,
        codec,
        topics=(topic,),
        group_id=unique_name("g"),
        until_caught_up=True,
    ).run()
    assert result.dead_letters == 2
    assert store.stats().dlq_count == 2
    got = {row[1]: (row[2], row[3], row[4]) for row in store.totals_rows("url")}
    assert got == expected_views(events).url

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": unique_name("dlq"),
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([f"{topic}.dlq"])
    letters = []
    deadline = time.monotonic() + 30
    while len(letters) < 2 and time.monotonic() < deadline:
        letters += [m for m in consumer.consume(10, timeout=1) if m.error() is None]
    consumer.close()
    origins = sorted((dict(m.headers())["logstream.origin.partition"], m.value()) for m in letters)
    assert origins == [(b"0", b"garbage bytes"), (b"1", unknown)]
    for m in letters:
        headers = dict(m.headers())
        assert headers["logstream.origin.topic"] == topic.encode()
        assert headers["logstream.view"] == b"likes-by-url"
        assert int(headers["logstream.origin.offset"]) >= 0
        assert headers["logstream.error.class"] in (b"CorruptMessageError", b"UnknownSchemaError")


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_and_doubles_nothing(
    kafka_bootstrap, make_topic, codec, tmp_path, unique_name
):
    """A consumer is SIGKILLed mid-stream again and again (each time after it has committed
    something new, at a random instant), restarted, and the view is still exact."""
    topic = make_topic(partitions=6, prefix="likes")
    events = generate_likes(120_000, seed=3)
    produce_likes(kafka_bootstrap, topic, events, codec)
    env = {
        **os.environ,
        "LOGSTREAM_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LOGSTREAM_DATA_DIR": str(tmp_path),
        "LOGSTREAM_FLUSH_MAX_KEYS": "100",
        "LOGSTREAM_CONSUME_BATCH_SIZE": "200",
        # Static membership: a restarted process takes its partitions back at once.
        "LOGSTREAM_CONSUMER_INSTANCE_ID": "crash-test",
        "LOGSTREAM_TEST_TOPIC": topic,
    }
    group = unique_name("crash")
    script = Path(__file__).with_name("run_view.py")
    view = VIEWS["likes-by-window"]
    store = open_view_store(None, tmp_path, view)
    rng = random.Random(42)

    def applied() -> int:
        return sum(p.next_offset for p in store.positions().values())

    kills_mid_stream = 0
    while kills_mid_stream < 10:
        before = applied()
        assert before < len(events), "the stream ended before 10 kills: make it longer"
        proc = subprocess.Popen(
            [sys.executable, str(script), view.name, group],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while applied() == before and proc.poll() is None:
            assert time.monotonic() < deadline, "no progress after a restart"
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills_mid_stream += 1
        proc.wait()
    final = subprocess.run(
        [sys.executable, str(script), view.name, group], env=env, timeout=300, check=True
    )
    assert final.returncode == 0
    assert applied() == len(events)
    expected = expected_views(events)
    from consumers.likes_by_window import cell
    from tests.integration.likes import BASE_MS, DAY_MS, SIZES

    for (size, key), counts in expected.windows.items():
        got = dict(
            store.windows(
                *cell(key), SIZES[size], BASE_MS - 10 * DAY_MS, BASE_MS + 30 * DAY_MS, 100_000
            )
        )
        assert got == dict(counts), (size, key)
