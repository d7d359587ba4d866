"""The query API generated for every registered view: a view declared in a package written
at test time (registered by LOGSTREAM_VIEWS) and a built-in answer one key over a range,
top-N by count or an aggregate, and windows of any bucket multiple with cursor paging,
exactly as an independent computation over the log says; bad parameters are named (422)."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import pytest
from fastapi.testclient import TestClient

from consumers import VIEWS
from ingest_api.app import create_app
from ingest_api.routes.views import rfc3339
from logstream.codec import Codec
from logstream.registry import resolve_view
from logstream.runtime import ViewRunner
from logstream.schemas import SchemaCatalogue
from logstream.settings import Settings
from logstream.stores.factory import open_view_store
from tests.integration.likes import BASE_MS, DAY_MS, generate_likes, produce_likes, read_log
from tests.view_package import forget_package, write_view_package

HOUR_MS = 3_600_000
PACKAGE = "queryviews_pkg"
SOURCE = """
from logstream.aggregates import distinct, latest, max_of, min_of, sum_of
from logstream.view import HOUR_MS, View

url_stats = View(
    name="url-stats", topics=("{topic}",), bucket_ms=HOUR_MS, key="url", totals=True,
    aggregates=(distinct("user_id", name="users"), min_of("occurred_at", name="oldest"),
                max_of("occurred_at", name="newest"), latest("user_id", name="last_user"),
                sum_of("occurred_at", name="time_sum")),
)
reshaped = View(name="reshaped", topics=("{topic}",), bucket_ms=HOUR_MS, key="url",
                aggregates=(sum_of("occurred_at", name="time_sum"),))
"""
RESHAPED_BEFORE = """
from logstream.view import HOUR_MS, View

reshaped = View(name="reshaped", topics=("{topic}",), bucket_ms=HOUR_MS, key="url")
"""


@pytest.fixture(scope="module")
def built(kafka_bootstrap, tmp_path_factory):
    """3,000 likes on 3 partitions; the user's view and likes-by-window built from them."""
    from confluent_kafka.admin import AdminClient

    from logstream.kafka.admin import TopicSpec, create_topics

    codec = Codec(SchemaCatalogue.load(Settings().resolved_schema_dir))
    root = tmp_path_factory.mktemp("queries")
    topic = f"likes-gq-{root.name}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    create_topics(admin, [TopicSpec(topic, 3, 1, {})], timeout_s=60)
    produce_likes(kafka_bootstrap, topic, generate_likes(3_000, seed=8, urls=30), codec)
    log = read_log(kafka_bootstrap, topic, codec, 3)
    package = write_view_package(root / "src", PACKAGE, SOURCE.format(topic=topic))
    # A module that raises on import, and a view whose store was built with another shape:
    # neither may take the API down (GET /v1/views lists them with their errors).
    (package / "broken.py").write_text("raise ValueError('the user module is broken')\n")
    (package / "before.py").write_text(RESHAPED_BEFORE.format(topic=topic))
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(root / "src"))
        settings = Settings(
            bootstrap_servers=kafka_bootstrap,
            data_dir=root / "data",
            views=f"{PACKAGE}.views:url_stats,{PACKAGE}.broken:v,{PACKAGE}.views:reshaped",
        )
        open_view_store(None, settings.data_dir, resolve_view(f"{PACKAGE}.before:reshaped")).close()
        user_view = resolve_view("url-stats", settings)
        for view in (user_view, VIEWS["likes-by-window"]):
            with open_view_store(None, settings.data_dir, view) as store:
                ViewRunner(
                    settings, view, store, codec, topics=(topic,), until_caught_up=True
                ).run()
        with TestClient(create_app(settings, topic_overrides={"like": topic})) as client:
            yield client, log, topic
    forget_package(PACKAGE)


def _with_positions(log: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [{**e, "p": p, "o": o} for p, events in enumerate(log) for o, e in enumerate(events)]


def _expected(events: list[dict[str, Any]]) -> dict[str, Any]:
    """count, first/last time and each aggregate of `events`, from scratch."""
    times = [e["occurred_at"] for e in events]
    newest = max(events, key=lambda e: (e["occurred_at"], e["p"], e["o"]))
    return {
        "count": len(events),
        "first_at": rfc3339(min(times)),
        "last_at": rfc3339(max(times)),
        "oldest": min(times),
        "newest": max(times),
        "last_user": newest["user_id"],
        "time_sum": sum(times),
        "users": len({e["user_id"] for e in events}),
    }


def _close(answer: dict[str, Any], want: dict[str, Any]) -> None:
    """Exact for everything but the HyperLogLog estimate (within 3 %)."""
    users = answer.pop("users"), want.pop("users")
    assert abs(users[0] - users[1]) <= max(1, 0.03 * users[1])
    assert {k: answer[k] for k in want} == want


def test_one_key_over_all_time_and_a_range(built):
    client, log, topic = built
    events = _with_positions(log)
    by_url = defaultdict(list)
    for e in events:
        by_url[e["url"]].append(e)
    for url in list(by_url)[:8]:
        body = client.get("/v1/views/url-stats/key", params={"url": url}).json()
        assert (body["url"], body["series"], body["granularity_ms"]) == (url, "url", HOUR_MS)
        _close(body, _expected(by_url[url]))
    since, until = BASE_MS + DAY_MS + 30 * 60_000, BASE_MS + 2 * DAY_MS  # since: mid-hour
    lo = since - since % HOUR_MS  # widened to the view's whole buckets
    url = next(iter(by_url))
    body = client.get(
        "/v1/views/url-stats/key", params={"url": url, "since": str(since), "until": str(until)}
    ).json()
    assert (body["since"], body["until"]) == (rfc3339(lo), rfc3339(until))
    _close(body, _expected([e for e in by_url[url] if lo <= e["occurred_at"] < until]))
    never = client.get("/v1/views/url-stats/key", params={"url": "https://never"}).json()
    assert (never["count"], never["first_at"], never["users"], never["newest"]) == (
        0,
        None,
        0,
        None,
    )
    fresh = never["freshness"]
    assert sum(fresh["offsets"][topic].values()) == len(events)
    assert fresh["view_version"] == "v1" and fresh["dead_letters"] == 0


def test_top_by_count_and_by_an_aggregate(built):
    client, log, _topic = built
    events = _with_positions(log)
    counts = Counter(e["url"] for e in events)
    body = client.get("/v1/views/url-stats/top", params={"limit": 5}).json()
    assert [(i["url"], i["count"]) for i in body["items"]] == sorted(
        counts.items(), key=lambda kv: (-kv[1], kv[0])
    )[:5]
    assert body["by"] == "count"
    since, until = BASE_MS + DAY_MS, BASE_MS + 3 * DAY_MS
    newest: dict[str, int] = {}
    for e in events:
        if since <= e["occurred_at"] < until:
            newest[e["url"]] = max(newest.get(e["url"], 0), e["occurred_at"])
    body = client.get(
        "/v1/views/url-stats/top",
        params={"by": "newest", "limit": 7, "since": rfc3339(since), "until": str(until)},
    ).json()
    assert [(i["url"], i["newest"]) for i in body["items"]] == sorted(
        newest.items(), key=lambda kv: (-kv[1], kv[0])
    )[:7]
    sums = Counter()
    for e in events:
        sums[e["url"]] += e["occurred_at"]
    body = client.get("/v1/views/url-stats/top", params={"by": "time_sum", "limit": 3}).json()
    assert [(i["url"], i["time_sum"]) for i in body["items"]] == sorted(
        sums.items(), key=lambda kv: (-kv[1], kv[0])
    )[:3]


def test_windows_of_any_bucket_multiple_page_exactly(built):
    """Unaligned since/until inside the data: the answer covers whole windows, from since
    floored to until ceiled to the size, and says so."""
    client, log, _topic = built
    events = _with_positions(log)
    url = events[0]["url"]
    since = BASE_MS + DAY_MS + 37 * 60_000 + 5_000
    until = BASE_MS + 4 * DAY_MS + 17 * 60_000
    cases = [
        ("url-stats", {"url": url}, "2h", 2 * HOUR_MS, [e for e in events if e["url"] == url]),
        ("likes-by-window", {"url": ""}, "15m", 15 * 60_000, events),  # a built-in, all URLs
        (
            "likes-by-window",
            {"url": url},
            "3600000",
            HOUR_MS,
            [e for e in events if e["url"] == url],
        ),
    ]
    for name, key, size, size_ms, chosen in cases:
        lo, hi = since // size_ms * size_ms, -(-until // size_ms) * size_ms
        assert (lo, hi) != (since, until)
        want: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in chosen:
            if lo <= e["occurred_at"] < hi:
                want[rfc3339(e["occurred_at"] // size_ms * size_ms)].append(e)
        assert len(want) < len({e["occurred_at"] // size_ms for e in chosen})  # range matters
        params = {**key, "size": size, "since": rfc3339(since), "until": str(until), "limit": 9}
        got: dict[str, dict[str, Any]] = {}
        pages = 0
        while True:
            body = client.get(f"/v1/views/{name}/windows", params=params).json()
            assert (body["since"], body["until"]) == (rfc3339(lo), rfc3339(hi))
            pages += 1
            for w in body["windows"]:
                assert w["start"] not in got
                got[w["start"]] = w
            if body["next_cursor"] is None:
                break
            params["cursor"] = body["next_cursor"]
        assert list(got) == sorted(got) and pages > 1
        assert {s: w["count"] for s, w in got.items()} == {s: len(es) for s, es in want.items()}
        if name == "url-stats":
            for start, w in got.items():
                _close(dict(w), _expected(want[start]))
                assert w["end"] == rfc3339(int(_ms(start)) + size_ms)


def _ms(rfc: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(rfc.replace("Z", "+00:00")).timestamp() * 1000)


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/views/url-stats/key", {}, "url"),
        ("/v1/views/url-stats/key", {"url": "u", "series": "nope"}, "series"),
        ("/v1/views/url-stats/key", {"url": "u", "since": "x"}, "since"),
        ("/v1/views/url-stats/key", {"url": "u", "since": "10", "until": "5"}, "until"),
        ("/v1/views/url-stats/top", {"by": "last_user"}, "by"),
        ("/v1/views/url-stats/top", {"by": "nope"}, "by"),
        ("/v1/views/url-stats/top", {"limit": "0"}, "limit"),
        (
            "/v1/views/url-stats/windows",
            {"url": "u", "size": "90m", "since": "0", "until": "9"},
            "size",
        ),
        (
            "/v1/views/url-stats/windows",
            {"url": "u", "size": "1x", "since": "0", "until": "9"},
            "size",
        ),
        ("/v1/views/url-stats/windows", {"url": "u", "size": "1h", "until": "9"}, "since"),
        (
            "/v1/views/url-stats/windows",
            {"url": "u", "size": "9999999999999d", "since": "0", "until": "9"},
            "size",
        ),
        (
            "/v1/views/url-stats/windows",
            {
                "url": "u",
                "size": "1h",
                "since": "0",
                "until": "9",
                "cursor": "OTk5OTk5OTk5OTk5OTk5OTk5OTk5",
            },
            "cursor",
        ),
        (
            "/v1/views/url-stats/windows",
            {"url": "u", "size": "1h", "since": "0", "until": "9", "cursor": "%%"},
            "cursor",
        ),
        (
            "/v1/views/likes-by-window/windows",
            {"url": "", "size": "30s", "since": "0", "until": "9"},
            "size",
        ),
        ("/v1/views/url-stats/key", {"url": "u", "wait_for": "x"}, "wait_for"),
    ],
)
def test_bad_parameters_are_named(built, path, params, field):
    client, _log, _topic = built
    response = client.get(path, params=params)
    assert response.status_code == 422, response.text
    fields = [f["field"] for f in response.json()["error"]["fields"]]
    assert any(f.endswith(field) for f in fields), fields


def test_read_your_writes_and_the_listing(built):
    client, log, topic = built
    last = f"{topic}:0:{len(log[0]) - 1}"
    ok = client.get("/v1/views/url-stats/key", params={"url": "u", "wait_for": last})
    assert ok.status_code == 200
    late = client.get(
        "/v1/views/url-stats/top",
        params={"wait_for": f"{topic}:0:{len(log[0]) + 50}", "wait_ms": 200},
    )
    assert late.status_code == 504 and late.json()["error"]["code"] == "not_yet_applied"
    listing = client.get("/v1/views")
    assert listing.status_code == 200, listing.text
    views = {v["name"]: v for v in listing.json()["views"]}
    assert set(views) == {
        "likes-by-url",
        "likes-by-user",
        "likes-by-window",
        "url-stats",
        "reshaped",
    }
    # A store of another shape is this view's error, not the listing's.
    assert views["reshaped"]["freshness"] is None
    assert "logstream rebuild reshaped" in views["reshaped"]["error"]
    assert views["url-stats"]["freshness"]["view_version"] == "v1"
    [broken] = listing.json()["broken"]
    assert broken["origin"] == f"LOGSTREAM_VIEWS reference '{PACKAGE}.broken:v'"
    assert "ValueError: the user module is broken" in broken["error"]
    assert views["url-stats"]["rankable"] == ["count", "users", "oldest", "newest", "time_sum"]
    assert views["likes-by-user"]["key"] == "user_id"
    spec = client.get("/openapi.json").json()["paths"]
    names = [p["name"] for p in spec["/v1/views/url-stats/key"]["get"]["parameters"]]
    assert names[:3] == ["url", "since", "until"] and "wait_for" in names
    # The likes routes keep their own answers: /top of likes-by-url is not generated over.
    top = spec["/v1/views/likes-by-url/top"]["get"]
    assert "by" not in [p["name"] for p in top["parameters"]]
    assert "/v1/views/likes-by-user/key" in spec and "/v1/views/likes-by-window/windows" in spec
