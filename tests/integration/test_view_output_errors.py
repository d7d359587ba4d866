"""What view code returns is checked before it touches a cell: a key of the wrong shape or a
sum/min/max over a value that is not a number is a view-code error like an exception (stop
at the event's offset, or with on_error="dead_letter" a dead letter), never a raw crash,
never a text "sum" in the store. And a stop drops the dead letters of the batch it drops:
after the fix and a restart the `.dlq` topic holds one copy of each."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from logstream.aggregates import max_of, sum_of
from logstream.codec import Codec
from logstream.errors import ViewCodeError
from logstream.kafka.admin import TopicSpec, create_topics
from logstream.runtime import ViewRunner
from logstream.schemas import SchemaCatalogue
from logstream.settings import Settings
from logstream.stores.factory import open_view_store
from logstream.view import HOUR_MS, View
from tests.integration.likes import generate_likes, produce_likes

POISON_USER = "poison-user"
BAD = 120  # index (= offset) of the event the view's keys go wrong on


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(SchemaCatalogue.load(Settings().resolved_schema_dir))


@pytest.fixture
def small_log(kafka_bootstrap, make_topic, admin, codec):
    """One partition, 200 likes; the one at offset BAD is by POISON_USER."""
    topic = make_topic(partitions=1, prefix="shapes")
    create_topics(admin, [TopicSpec(f"{topic}.dlq", 1, 1, {})], timeout_s=60)
    events = generate_likes(200, seed=5, urls=12)
    events[BAD]["user_id"] = POISON_USER
    produce_likes(kafka_bootstrap, topic, events, codec)
    return topic, events


def _settings(kafka_bootstrap: str, tmp_path, **extra: Any) -> Settings:
    return Settings(bootstrap_servers=kafka_bootstrap, data_dir=tmp_path / "data", **extra)


def _counts(store) -> dict[str, int]:
    return {row[1]: row[2] for row in store.totals_rows("url")}


def _keys_going_wrong(wrong: Any):
    """keys= returning `wrong` as the poison event's cell ("B": its right bucket)."""

    def keys(event, event_ms):
        bucket = event_ms - event_ms % HOUR_MS
        if event["user_id"] == POISON_USER:
            return [(*wrong[:2], bucket) if wrong[2:] == ("B",) else wrong]
        return [("url", event["url"], bucket)]

    return keys


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (("url", ["unhashable"], "B"), "key ['unhashable'] is not text"),
        (("url", 5, "B"), "key 5 is not text"),
        (("nope", "x", "B"), "series 'nope' is not one the view declares (url)"),
        (("url", "x", 1.5), "bucket 1.5 is not a whole ms multiple"),
        (("url", "x", 1), "bucket 1 is not a whole ms multiple"),
        (("url", "x"), "keys must be (series, key, bucket_start_ms) tuples"),
        (["url", "x", 0], "keys must be (series, key, bucket_start_ms) tuples"),
    ],
)
def test_keys_of_the_wrong_shape_stop_at_their_offset(
    kafka_bootstrap, small_log, codec, tmp_path, unique_name, wrong, message
):
    topic, _events = small_log
    view = View(
        name=unique_name("shape"),
        topics=(topic,),
        bucket_ms=HOUR_MS,
        keys=_keys_going_wrong(wrong),
        series=("url",),
        totals=True,
    )
    settings = _settings(kafka_bootstrap, tmp_path, consume_batch_size=40, flush_max_keys=1)
    with open_view_store(None, settings.data_dir, view) as store:
        with pytest.raises(ViewCodeError) as caught:
            ViewRunner(settings, view, store, codec, until_caught_up=True).run()
        error = caught.value
        assert (error.topic, error.partition, error.offset) == (topic, 0, BAD)
        assert message in str(error) and "ViewOutputError" in str(error)
        stored = store.positions()[(topic, 0)].next_offset
        assert stored <= BAD  # nothing at or after the bad event is committed
        assert all(isinstance(row[1], str) for row in store.bucket_rows())
        assert sum(_counts(store).values()) == stored


def test_wrong_keys_are_dead_letters_with_that_policy(
    kafka_bootstrap, small_log, codec, tmp_path, unique_name
):
    topic, events = small_log
    view = View(
        name=unique_name("shape"),
        topics=(topic,),
        bucket_ms=HOUR_MS,
        keys=_keys_going_wrong(("url", 5, "B")),
        series=("url",),
        totals=True,
        on_error="dead_letter",
    )
    settings = _settings(kafka_bootstrap, tmp_path)
    with open_view_store(None, settings.data_dir, view) as store:
        result = ViewRunner(settings, view, store, codec, until_caught_up=True).run()
        assert result.caught_up and result.dead_letters == 1
        good = [e for e in events if e["user_id"] != POISON_USER]
        assert _counts(store) == dict(Counter(e["url"] for e in good))
        assert store.stats().dlq_count == 1


@pytest.mark.parametrize("on_error", ["stop", "dead_letter"])
def test_a_sum_over_text_is_a_view_code_error(
    kafka_bootstrap, small_log, codec, tmp_path, unique_name, on_error
):
    """sum_of over a text field: every event fails the type check before its cells are
    touched (stop at offset 0, or all dead-lettered), never a text "sum" in the store."""
    topic, events = small_log
    view = View(
        name=unique_name("sums"),
        topics=(topic,),
        bucket_ms=HOUR_MS,
        key="url",
        aggregates=(max_of("occurred_at", name="newest"), sum_of("user_id", name="users")),
        totals=True,
        on_error=on_error,
    )
    settings = _settings(kafka_bootstrap, tmp_path)
    with open_view_store(None, settings.data_dir, view) as store:
        runner = ViewRunner(settings, view, store, codec, until_caught_up=True)
        if on_error == "stop":
            with pytest.raises(ViewCodeError) as caught:
                runner.run()
            assert caught.value.offset == 0
            assert "field 'user_id' (sum_of 'users') is str" in str(caught.value)
            assert "not a finite number" in str(caught.value)
            assert store.positions() == {}
        else:
            result = runner.run()
            assert result.caught_up and result.dead_letters == len(events)
            assert store.stats().dlq_count == len(events)
            assert store.positions()[(topic, 0)].next_offset == len(events)
        assert store.bucket_rows() == [] and store.totals_rows() == []


def _dlq_copies(bootstrap: str, topic: str) -> list[bytes]:
    """Every message of `<topic>.dlq`, read up to its end offset."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"r-{topic}"})
    dlq = TopicPartition(f"{topic}.dlq", 0, 0)
    _low, high = consumer.get_watermark_offsets(dlq, timeout=30)
    consumer.assign([dlq])
    values: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(values) < high and time.monotonic() < deadline:
        values += [m.value() for m in consumer.consume(100, timeout=1) if m.error() is None]
    consumer.close()
    assert len(values) == high
    return values


def test_a_stop_does_not_duplicate_the_dead_letters_of_its_batch(
    kafka_bootstrap, make_topic, admin, codec, tmp_path, unique_name
):
    """Garbage just before the bad event, in the batch the stop drops: not dead-lettered by
    the stopped run (its batch is read again), exactly once after the fix and a restart."""
    topic = make_topic(partitions=1, prefix="dlqonce")
    create_topics(admin, [TopicSpec(f"{topic}.dlq", 1, 1, {})], timeout_s=60)
    events = generate_likes(100, seed=9, urls=10)
    events[60]["user_id"] = POISON_USER
    produce_likes(kafka_bootstrap, topic, events[:60], codec)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, key=b"k", value=b"garbage next to the bug", partition=0)
    assert producer.flush(30) == 0
    produce_likes(kafka_bootstrap, topic, events[60:], codec)  # the bad event: offset 61

    def declare(buggy: bool) -> View:
        def keys(event):
            if buggy and event["user_id"] == POISON_USER:
                raise KeyError("the bug")
            return [("url", event["url"])]

        return View(name=name, topics=(topic,), bucket_ms=HOUR_MS, key=keys, series="url")

    name = unique_name("dlqonce")
    settings = _settings(kafka_bootstrap, tmp_path, consume_batch_size=500)
    with open_view_store(None, settings.data_dir, declare(True)) as store:
        runner = ViewRunner(settings, declare(True), store, codec, until_caught_up=True)
        with pytest.raises(ViewCodeError):
            runner.run()
        assert runner.result.dead_letters == 0  # its batch was dropped, dead letter and all
        assert store.stats().dlq_count == 0
        stored = store.positions().get((topic, 0))
        assert stored is None or stored.next_offset <= 60
    with open_view_store(None, settings.data_dir, declare(False)) as store:
        result = ViewRunner(settings, declare(False), store, codec, until_caught_up=True).run()
        assert result.caught_up and result.dead_letters == 1
        assert store.stats().dlq_count == 1
        assert sum(row[3] for row in store.bucket_rows()) == len(events)
    assert _dlq_copies(kafka_bootstrap, topic) == [b"garbage next to the bug"]
