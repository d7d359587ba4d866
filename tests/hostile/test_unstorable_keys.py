"""Events no store can hold do not stop or corrupt a view (issue 11, "Why", first bullet).

Written straight to Kafka (no ingest to refuse them): likes of three URLs that differ only
after a NUL, the URL they share up to it, and an empty url. On SQLite the JSON-fed upsert
used to count the three as 3 likes of the shared prefix; on PostgreSQL every flush failed
("text fields cannot contain NUL") and nothing reached the DLQ; and the empty url's likes
were added to the all-URL total a second time. Now each NUL event is dead-lettered with its
reason, and every view equals an independent recomputation over the log without them.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from fastapi.testclient import TestClient

from consumers import VIEWS
from consumers.likes_by_window import cell
from ingest_api.app import create_app
from logstream.codec import Codec
from logstream.errors import StaleLayoutError
from logstream.kafka.admin import TopicSpec, create_topics
from logstream.runtime import ViewRunner
from logstream.schemas import SchemaCatalogue
from logstream.settings import Settings
from logstream.stores.base import Counter as StoreCounter
from logstream.stores.base import Flush
from logstream.stores.factory import open_store, open_view_store

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MINUTE = 60_000
VICTIM = "https://victim.example/"
NUL_URLS = [VICTIM + "\x00a", VICTIM + "\x00b", VICTIM + "\x00c"]
PG_DSN = os.environ.get("LOGSTREAM_TEST_PG_DSN")
STORES = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(
            not PG_DSN, reason="set LOGSTREAM_TEST_PG_DSN (start one with .ci/postgres.sh)"
        ),
    ),
]


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(SchemaCatalogue.load(Settings().resolved_schema_dir))


def _likes() -> list[dict[str, Any]]:
    """30 likes over 3 minutes: 3 NUL urls (twice each), the victim, an empty url, others."""
    urls = [*NUL_URLS, VICTIM, "", "https://example.com/a", "https://example.com/b", *NUL_URLS]
    events = []
    for i in range(30):
        events.append(
            {
                "event_id": str(uuid.UUID(int=i + 1, version=4)),
                "url": urls[i % len(urls)],
                "user_id": f"user\x00{i % 4}" if i % 7 == 0 else f"user-{i % 4}",
                "occurred_at": BASE_MS + (i % 3) * MINUTE + i,
            }
        )
    return events


def _produce(bootstrap: str, topic: str, events: list[dict[str, Any]], codec: Codec) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for event in events:
        producer.produce(
            topic,
            key=event["url"].encode(),
            value=codec.encode("like", event),
            timestamp=event["occurred_at"],
        )
    assert producer.flush(30) == 0


def _dead_letters(bootstrap: str, topic: str, want: int) -> list[dict[str, str]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"dlq-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([f"{topic}.dlq"])
    found: list[dict[str, str]] = []
    deadline = time.monotonic() + 60
    try:
        while len(found) < want and time.monotonic() < deadline:
            for msg in consumer.consume(50, timeout=1):
                if msg.error() is None:
                    found.append({k: (v or b"").decode() for k, v in msg.headers() or []})
    finally:
        consumer.close()
    return found


def _settings(kind: str, bootstrap: str, data_dir) -> Settings:
    return Settings(
        bootstrap_servers=bootstrap,
        data_dir=data_dir,
        store_url=PG_DSN if kind == "postgresql" else None,
    )


@pytest.mark.parametrize("kind", STORES)
def test_nul_keys_are_dead_lettered_and_views_stay_exact(
    kind, kafka_bootstrap, admin, codec, tmp_path, unique_name
):
    topic = unique_name("likes-nul")
    create_topics(
        admin, [TopicSpec(topic, 1, 1, {}), TopicSpec(f"{topic}.dlq", 1, 1, {})], timeout_s=60
    )
    events = _likes()
    _produce(kafka_bootstrap, topic, events, codec)
    settings = _settings(kind, kafka_bootstrap, tmp_path / "data")
    stores = {}
    for name, view in VIEWS.items():
        namespace = f"{name}-{topic}"  # private to this test, on a shared PostgreSQL too
        store = open_view_store(settings.store_url, settings.data_dir, view, namespace)
        runner = ViewRunner(
            settings,
            view,
            store,
            codec,
            topics=(topic,),
            group_id=namespace,
            until_caught_up=True,
        )
        result = runner.run()
        assert result.caught_up, name
        stores[name] = store
    try:
        # The independent recomputation: what each view's keys may hold, NUL-free events only.
        by_url = Counter(e["url"] for e in events if "\x00" not in e["url"])
        by_user = Counter(e["user_id"] for e in events if "\x00" not in e["user_id"])
        got_url = {row[1]: row[2] for row in stores["likes-by-url"].totals_rows("url")}
        assert got_url == dict(by_url)
        got_user = Counter()
        for row in stores["likes-by-user"].bucket_rows("user"):
            got_user[row[1]] += row[3]
        assert got_user == by_user
        kept = [e for e in events if "\x00" not in e["url"]]
        window_store = stores["likes-by-window"]
        for url in (None, "", VICTIM):
            want = Counter(
                e["occurred_at"] // MINUTE * MINUTE for e in kept if url is None or e["url"] == url
            )
            got = dict(window_store.windows(*cell(url), MINUTE, BASE_MS, BASE_MS + 10 * MINUTE, 99))
            assert got == dict(want), url
        # The total counts each kept like once, the empty url its own likes only.
        total = sum(c for _s, c in window_store.windows(*cell(None), MINUTE, 0, 2**50, 99))
        empty = sum(c for _s, c in window_store.windows(*cell(""), MINUTE, 0, 2**50, 99))
        assert (total, empty) == (len(kept), by_url[""])
        # Every refused event is in the DLQ, with the reason, once per view that refused it.
        nul_url = sum("\x00" in e["url"] for e in events)
        nul_user = sum("\x00" in e["user_id"] for e in events)
        letters = _dead_letters(kafka_bootstrap, topic, 2 * nul_url + nul_user)
        assert len(letters) == 2 * nul_url + nul_user
        assert all("contains NUL" in h["logstream.error"] for h in letters)
        assert all(h["logstream.error.class"] == "UnstorableKeyError" for h in letters)
        assert stores["likes-by-url"].stats().dlq_count == nul_url
    finally:
        for store in stores.values():
            store.close()


@pytest.mark.parametrize("kind", STORES)
def test_a_window_store_of_the_old_layout_is_refused_naming_the_rebuild(
    kind, kafka_bootstrap, tmp_path, unique_name
):
    """The old total row (series w, url "") cannot be split from the empty url's likes."""
    settings = _settings(kind, kafka_bootstrap, tmp_path / "data")
    view = VIEWS["likes-by-window"]
    namespace = unique_name("likes-by-window-old")
    old = open_store(
        settings.store_url,
        settings.data_dir,
        namespace,
        view.totals_series,
        time_index=view.time_index,
    )
    deltas = {
        ("w", "https://a", BASE_MS): StoreCounter(2, BASE_MS, BASE_MS),
        ("w", "", BASE_MS): StoreCounter(2, BASE_MS, BASE_MS),
    }
    old.commit(Flush(deltas, [("likes", 0, None, 2)]))
    old.close()
    with pytest.raises(StaleLayoutError, match="logstream rebuild likes-by-window"):
        open_view_store(settings.store_url, settings.data_dir, view, namespace)
    # A store of this layout with an empty url's likes opens: its total rows exist.
    fresh = unique_name("likes-by-window-new")
    new = open_store(
        settings.store_url, settings.data_dir, fresh, view.totals_series, time_index=view.time_index
    )
    new.commit(
        Flush(
            {**deltas, ("all", "", BASE_MS): StoreCounter(2, BASE_MS, BASE_MS)},
            [("likes", 0, None, 2)],
        )
    )
    new.close()
    open_view_store(settings.store_url, settings.data_dir, view, fresh).close()


def test_the_query_api_answers_an_old_layout_with_503_naming_the_rebuild(kafka_bootstrap, tmp_path):
    settings = Settings(bootstrap_servers=kafka_bootstrap, data_dir=tmp_path / "data")
    view = VIEWS["likes-by-window"]
    old = open_store(
        None, settings.data_dir, view.name, view.totals_series, time_index=view.time_index
    )
    old.commit(
        Flush({("w", "", BASE_MS): StoreCounter(1, BASE_MS, BASE_MS)}, [("likes", 0, None, 1)])
    )
    old.close()
    with TestClient(create_app(settings)) as client:
        response = client.get(
            "/v1/views/likes-by-window", params={"size": "1h", "since": "0", "until": "9"}
        )
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "rebuild_needed"
    assert "logstream rebuild likes-by-window" in error["message"]
