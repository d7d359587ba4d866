"""The read API answers from the views exactly, pages windows, names bad parameters, and
lets a client read its own writes."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from fastapi.testclient import TestClient

from consumers import VIEWS
from ingest_api.app import create_app
from ingest_api.routes.views import rfc3339
from logstream.codec import Codec
from logstream.runtime import ViewRunner
from logstream.schemas import SchemaCatalogue
from logstream.settings import Settings
from logstream.stores.factory import open_view_store
from tests.integration.likes import (
    BASE_MS,
    DAY_MS,
    SIZES,
    expected_views,
    generate_likes,
    produce_likes,
)


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(SchemaCatalogue.load(Settings().resolved_schema_dir))


@pytest.fixture(scope="module")
def built(kafka_bootstrap, codec, tmp_path_factory):
    """5,000 generated likes on a private topic, every view built from them."""
    from confluent_kafka.admin import AdminClient

    from logstream.kafka.admin import TopicSpec, create_topics

    topic = f"likes-q-{id(codec)}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    create_topics(admin, [TopicSpec(topic, 4, 1, {})], timeout_s=60)
    events = generate_likes(5_000, seed=21, urls=50, users=300)
    produce_likes(kafka_bootstrap, topic, events, codec)
    data_dir = tmp_path_factory.mktemp("views")
    settings = Settings(bootstrap_servers=kafka_bootstrap, data_dir=data_dir)
    for name, view in VIEWS.items():
        store = open_view_store(None, data_dir, view)
        ViewRunner(
            settings,
            view,
            store,
            codec,
            topics=(topic,),
            group_id=f"{name}-{topic}",
            until_caught_up=True,
        ).run()
        store.close()
    app = create_app(settings, topic_overrides={"like": topic})
    with TestClient(app) as client:
        yield client, events, topic


def test_url_and_user_lookups_are_exact(built):
    client, events, topic = built
    expected = expected_views(events)
    for url, (count, first, last) in list(expected.url.items())[:10]:
        body = client.get("/v1/views/likes-by-url", params={"url": url}).json()
        assert (body["url"], body["count"]) == (url, count)
        assert (body["first_at"], body["last_at"]) == (rfc3339(first), rfc3339(last))
    unknown = client.get("/v1/views/likes-by-url", params={"url": "https://never"}).json()
    assert (unknown["count"], unknown["first_at"], unknown["last_at"]) == (0, None, None)
    user, (count, _f, _l) = next(iter(expected.user.items()))
    assert client.get("/v1/views/likes-by-user", params={"user_id": user}).json()["count"] == count
    fresh = client.get("/v1/views/likes-by-user", params={"user_id": user}).json()["freshness"]
    assert sum(fresh["offsets"][topic].values()) == len(events)
    assert fresh["newest_event_at"] == rfc3339(max(e["occurred_at"] for e in events))
    assert fresh["dead_letters"] == 0
    assert fresh["view_version"] == "v1"


def test_top_ranks_by_count_then_url_and_honours_a_range(built):
    client, events, _topic = built
    ranked = sorted(Counter(e["url"] for e in events).items(), key=lambda kv: (-kv[1], kv[0]))
    body = client.get("/v1/views/likes-by-url/top", params={"limit": 7}).json()
    assert [(i["url"], i["count"]) for i in body["items"]] == ranked[:7]

    since, until = BASE_MS + DAY_MS, BASE_MS + 2 * DAY_MS  # whole hours
    in_range = Counter(e["url"] for e in events if since <= e["occurred_at"] < until)
    ranked = sorted(in_range.items(), key=lambda kv: (-kv[1], kv[0]))
    body = client.get(
        "/v1/views/likes-by-url/top",
        params={"limit": 5, "since": rfc3339(since), "until": str(until)},
    ).json()
    assert [(i["url"], i["count"]) for i in body["items"]] == ranked[:5]


def test_windows_page_through_exactly(built):
    client, events, _topic = built
    expected = expected_views(events)
    url = next(iter(expected.url))
    for size, key in (("1h", url), ("1d", None), ("1m", url)):
        params = {
            "size": size,
            "since": str(BASE_MS - 5 * DAY_MS),
            "until": "2026-02-01T00:00:00Z",
            "limit": 13,
        }
        if key is not None:
            params["url"] = key
        got: dict[str, int] = {}
        starts: list[str] = []
        while True:
            body = client.get("/v1/views/likes-by-window", params=params).json()
            for w in body["windows"]:
                got[w["start"]] = w["count"]
                starts.append(w["start"])
            if body["next_cursor"] is None:
                break
            params["cursor"] = body["next_cursor"]
        want = {rfc3339(s): c for s, c in expected.windows[(size, key)].items()}
        assert got == want, size
        assert starts == sorted(starts)
        assert len(starts) == len(set(starts))
    one = client.get(
        "/v1/views/likes-by-window",
        params={"size": "1d", "since": str(BASE_MS), "until": str(BASE_MS + DAY_MS)},
    ).json()
    w = one["windows"][0]
    assert (w["start"], w["end"]) == (rfc3339(BASE_MS), rfc3339(BASE_MS + SIZES["1d"]))


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/views/likes-by-window", {"size": "2m", "since": "0", "until": "10"}, "size"),
        ("/v1/views/likes-by-window", {"size": "1h", "since": "yesterday", "until": "10"}, "since"),
        ("/v1/views/likes-by-window", {"size": "1h", "since": "10", "until": "5"}, "until"),
        (
            "/v1/views/likes-by-window",
            {"size": "1h", "since": "0", "until": "10", "cursor": "%%%"},
            "cursor",
        ),
        ("/v1/views/likes-by-window", {"size": "1h", "until": "10"}, "since"),
        ("/v1/views/likes-by-url", {}, "url"),
        ("/v1/views/likes-by-url/top", {"limit": "0"}, "limit"),
        ("/v1/views/likes-by-user", {"user_id": "u", "wait_for": "x"}, "wait_for"),
    ],
)
def test_bad_parameters_are_named(built, path, params, field):
    client, _events, _topic = built
    response = client.get(path, params=params)
    assert response.status_code == 422
    fields = [f["field"] for f in response.json()["error"]["fields"]]
    assert any(f.endswith(field) for f in fields), fields


def test_read_your_writes(kafka_bootstrap, make_topic, codec, tmp_path):
    topic = make_topic(partitions=3)
    settings = Settings(bootstrap_servers=kafka_bootstrap, data_dir=tmp_path, flush_interval_s=0.2)
    view = VIEWS["likes-by-url"]
    store = open_view_store(None, tmp_path, view)
    runner = ViewRunner(settings, view, store, codec, topics=(topic,), group_id=f"ryw-{topic}")
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        with TestClient(create_app(settings, topic_overrides={"like": topic})) as client:
            posted = client.post("/v1/events/likes", json={"url": "https://ryw", "user_id": "u"})
            assert posted.status_code == 202
            ack = posted.json()
            target = f"{ack['topic']}:{ack['partition']}:{ack['offset']}"
            body = client.get(
                "/v1/views/likes-by-url", params={"url": "https://ryw", "wait_for": target}
            ).json()
            assert body["count"] == 1
            assert body["freshness"]["offsets"][topic][str(ack["partition"])] > ack["offset"]
            too_far = f"{topic}:{ack['partition']}:{ack['offset'] + 1000}"
            late = client.get(
                "/v1/views/likes-by-url",
                params={"url": "https://ryw", "wait_for": too_far, "wait_ms": 300},
            )
            assert late.status_code == 504
    finally:
        runner.stop()
        thread.join(timeout=30)
        store.close()
