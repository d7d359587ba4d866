"""A view with sum/min/max/latest/distinct aggregates against a real broker: the live build,
a partial backfill from a datetime and a rebuild are each exact against an independent
computation from the log, late and out-of-order events included; the rebuild equals the live
store row for row (HLL sketches byte for byte)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import orjson
import pytest

from logstream.aggregates import distinct, latest, max_of, min_of, sum_of
from logstream.backfill import KafkaState, Target, execute_plan, make_plan
from logstream.backfill.targets import format_ms
from logstream.codec import Codec
from logstream.runtime import ViewRunner
from logstream.schemas import SchemaCatalogue
from logstream.settings import Settings
from logstream.stores import ViewStore
from logstream.stores.factory import open_view_store
from logstream.view import HOUR_MS, View, floor_to
from tests.aggregates_model import Ev, expected_cells
from tests.integration.likes import BASE_MS, DAY_MS, generate_likes, produce_likes, read_log

PARTITIONS = 3
FIRST, MORE = 1500, 500
MIDDLE_MS = BASE_MS + 2 * DAY_MS + 7 * 60_000 + 123  # inside the stream, not on a bucket


class AggregatedLikes(View):
    """Likes per URL and overall, per hour, with one aggregate of every kind."""

    name = "likes-aggregated"
    topics = ("likes",)
    bucket_ms = HOUR_MS
    totals_series = frozenset({"url"})
    aggregates: ClassVar[tuple[Any, ...]] = (
        sum_of("occurred_at", name="time_sum"),
        min_of("occurred_at", name="time_min"),
        max_of("occurred_at", name="time_max"),
        latest("referrer"),
        distinct("user_id", name="users"),
    )

    def keys(self, event: Mapping[str, Any], event_ms: int) -> Iterable[tuple[str, str, int]]:
        bucket = floor_to(event_ms, HOUR_MS)
        return (("url", event["url"], bucket), ("all", "", bucket))


VIEW = AggregatedLikes()


def keys_of(e: Ev) -> list[tuple[str, str, int]]:
    return list(VIEW.keys(e.record, e.ts))


def with_referrers(events: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{**e, "referrer": rng.choice([None, None, "a", "b", "c", "d"])} for e in events]


def log_events(settings: Settings, topic: str, codec: Codec) -> list[Ev]:
    """Every event of the topic with its partition and offset, as read back from Kafka."""
    partitions = read_log(settings.bootstrap_servers, topic, codec, PARTITIONS)
    return [
        Ev(record["occurred_at"], p, offset, record)
        for p, records in enumerate(partitions)
        for offset, record in enumerate(records)
    ]


def assert_exact(store: ViewStore, events: list[Ev]) -> None:
    """Every bucket and totals row against a from-scratch computation (distinct: the stored
    sketch equals the sketch of the exact value set built in one go, byte for byte)."""
    aggs = VIEW.aggregates
    buckets = expected_cells(aggs, events, keys_of)
    totals = expected_cells(aggs, events, keys_of, group=lambda k: k[:2])
    totals = {k: v for k, v in totals.items() if k[0] == "url"}
    for rows, want_cells, width in (
        (store.bucket_rows(), buckets, 3),
        (store.totals_rows(), totals, 2),
    ):
        assert {r[:width] for r in rows} == set(want_cells)
        for row in rows:
            want = want_cells[row[:width]]
            count, first, last, t_sum, t_min, t_max, _ms, _p, _o, ref, users = row[width:]
            assert (count, first, last, t_sum, t_min, t_max) == tuple(
                want[k]
                for k in ("count", "first_ms", "last_ms", "time_sum", "time_min", "time_max")
            ), row[:width]
            assert (None if ref is None else orjson.loads(ref)) == want["latest_referrer"]
            assert users == want["users:sketch"], row[:width]
    for (series, key), want in list(totals.items())[:20]:
        summary = store.summary(series, key)
        assert summary is not None
        assert summary.values["users"] == pytest.approx(want["users"], rel=0.05)
        assert summary.values["latest_referrer"] == want["latest_referrer"]


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(SchemaCatalogue.load(Settings().resolved_schema_dir))


def run(settings: Settings, store: ViewStore, codec: Codec, topic: str, group: str) -> None:
    result = ViewRunner(
        settings, VIEW, store, codec, group_id=group, until_caught_up=True, topics=(topic,)
    ).run()
    assert result.caught_up


def test_live_backfill_and_rebuild_are_exact(
    kafka_bootstrap, make_topic, codec, tmp_path, unique_name
) -> None:
    settings = Settings(
        bootstrap_servers=kafka_bootstrap,
        data_dir=tmp_path,
        flush_max_keys=300,  # many small flushes: merges across flushes are exercised
        flush_interval_s=0.05,
    )
    topic = make_topic(partitions=PARTITIONS, prefix="likes")
    group = unique_name("agg")
    events = with_referrers(generate_likes(FIRST + MORE, seed=31, late_fraction=0.2), seed=31)
    produce_likes(kafka_bootstrap, topic, events[:FIRST], codec)
    live = open_view_store(None, tmp_path, VIEW)
    try:
        # 1. the live build
        run(settings, live, codec, topic, group)
        assert_exact(live, log_events(settings, topic, codec))

        # 2. more events, then a partial backfill from a datetime, then the replay
        produce_likes(kafka_bootstrap, topic, events[FIRST:], codec)
        kafka = KafkaState(settings)
        try:
            plan = make_plan(
                VIEW,
                Target.from_options(to_datetime=format_ms(MIDDLE_MS)),
                [],
                positions=live.positions(),
                log=kafka,
                group_id=group,
                topics=(topic,),
            )
            assert plan.drop_from_ms == floor_to(MIDDLE_MS, HOUR_MS)
            execute_plan(plan, store=live, kafka=kafka)
        finally:
            kafka.close()
        run(settings, live, codec, topic, group)
        everything = log_events(settings, topic, codec)
        assert_exact(live, everything)

        # 3. a rebuild into a fresh namespace equals the live store row for row
        rebuilt = open_view_store(None, tmp_path, VIEW, VIEW.namespace("v2"))
        try:
            run(
                Settings(bootstrap_servers=kafka_bootstrap, data_dir=tmp_path),
                rebuilt,
                codec,
                topic,
                unique_name("agg-rebuild"),
            )
            assert rebuilt.bucket_rows() == live.bucket_rows()
            assert rebuilt.totals_rows() == live.totals_rows()
        finally:
            rebuilt.close()
    finally:
        live.close()
