"""Retried events (same event_id, same key) are applied once by every view, against a real
broker: through small flushes, an abrupt stop, backfills to a datetime and to an offset, a
store that lost its event-id window, and a rebuild that must equal the live build.

The expectation is recomputed independently: the log is read back partition by partition
and the rule (an id seen within the horizon's preceding offsets is a duplicate) applied to
it without the runtime's code (`expected_from_log` in tests/integration/likes.py)."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from consumers import VIEWS
from logstream.backfill import KafkaState, Target, execute_plan, make_plan
from logstream.backfill.targets import format_ms
from logstream.codec import Codec
from logstream.runtime import ViewRunner
from logstream.schemas import SchemaCatalogue
from logstream.settings import Settings
from logstream.stores.factory import open_view_store, sqlite_path
from tests.integration.likes import (
    BASE_MS,
    DAY_MS,
    assert_views_match,
    expected_from_log,
    expected_views,
    generate_likes,
    produce_likes,
    read_log,
)

PARTITIONS = 3
HORIZON = 150  # offsets per partition; the generated retries land within it, some beyond
MIDDLE_MS = BASE_MS + 2 * DAY_MS + 7 * 60_000 + 123


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(SchemaCatalogue.load(Settings().resolved_schema_dir))


def with_retries(events: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Insert client retries: a copy with the same event_id (and url, so the same partition)
    a few positions later, half with the same occurred_at, half re-stamped a few seconds
    later (a retry that let ingest pick the time); a few copies land far beyond the horizon."""
    rng = random.Random(seed)
    out = list(events)
    for i, event in enumerate(events):
        roll = rng.random()
        if roll < 0.10:
            copy = dict(event)
            if rng.random() < 0.5:
                copy["occurred_at"] = event["occurred_at"] + rng.randint(1_000, 9_000)
            out.insert(min(len(out), i + rng.randint(1, 40)), copy)
        elif roll < 0.11:
            out.append(dict(event))  # far later: beyond the horizon, so counted again
    return out


class Views:
    """All views of one topic, built by private groups into a private data dir."""

    def __init__(self, settings: Settings, codec: Codec, topic: str, suffix: str) -> None:
        self.settings, self.codec, self.topic = settings, codec, topic
        self.groups = {name: f"{name}-{suffix}" for name in VIEWS}
        self.stores = {
            name: open_view_store(None, settings.data_dir, v) for name, v in VIEWS.items()
        }

    def runner(self, name: str, **kwargs: Any) -> ViewRunner:
        return ViewRunner(
            self.settings,
            VIEWS[name],
            self.stores[name],
            self.codec,
            group_id=self.groups[name],
            topics=(self.topic,),
            **kwargs,
        )

    def consume_all(self) -> None:
        for name in VIEWS:
            assert self.runner(name, until_caught_up=True).run().caught_up

    def stop_abruptly_after(self, name: str, messages: int) -> None:
        """Run until `messages` were read, then fail mid-batch: what was not flushed is lost."""
        seen = 0

        def count(n: int) -> None:
            nonlocal seen
            seen += n
            if seen >= messages:
                raise _Abort

        with pytest.raises(_Abort):
            self.runner(name, on_progress=count).run()

    def backfill(self, target: Target) -> None:
        kafka = KafkaState(self.settings)
        try:
            for name, store in self.stores.items():
                plan = make_plan(
                    VIEWS[name],
                    target,
                    [],
                    positions=store.positions(),
                    log=kafka,
                    group_id=self.groups[name],
                    topics=(self.topic,),
                )
                assert plan.refused == []
                execute_plan(plan, store=store, kafka=kafka)
        finally:
            kafka.close()

    def rows(self) -> dict[str, Any]:
        return {n: (s.bucket_rows(), s.totals_rows()) for n, s in self.stores.items()}

    def close(self) -> None:
        for store in self.stores.values():
            store.close()


class _Abort(Exception):
    pass


@pytest.fixture
def views(kafka_bootstrap, make_topic, codec, tmp_path, unique_name) -> Iterator[Views]:
    settings = Settings(
        bootstrap_servers=kafka_bootstrap,
        data_dir=tmp_path / "live",
        flush_max_keys=200,
        flush_interval_s=0.05,
        consume_batch_size=97,
        dedupe_horizon_events=HORIZON,
    )
    v = Views(settings, codec, make_topic(partitions=PARTITIONS, prefix="likes"), unique_name())
    try:
        yield v
    finally:
        v.close()


def assert_exact(v: Views) -> int:
    log = read_log(v.settings.bootstrap_servers, v.topic, v.codec, PARTITIONS)
    kept, duplicates = expected_from_log(log, HORIZON)
    assert_views_match(v.stores, expected_views(kept))
    return duplicates


def test_retries_are_counted_once_through_stops_backfills_and_rebuilds(
    views: Views, codec: Codec, unique_name, tmp_path
) -> None:
    v = views
    events = with_retries(generate_likes(3000, seed=31, late_fraction=0.15), seed=5)
    first, more = events[:2000], events[2000:]
    produce_likes(v.settings.bootstrap_servers, v.topic, first, codec)
    v.consume_all()
    assert assert_exact(v) > 100  # the scenario really has retries, and they matter:
    partitions = read_log(v.settings.bootstrap_servers, v.topic, codec, PARTITIONS)
    every = [e for p in partitions for e in p]
    assert expected_views(expected_from_log(partitions, HORIZON)[0]) != expected_views(every)

    # More events, with retries of the first ones too; one view stops abruptly mid-way.
    produce_likes(v.settings.bootstrap_servers, v.topic, more, codec)
    v.stop_abruptly_after("likes-by-url", 400)
    v.consume_all()
    assert_exact(v)
    live = v.rows()

    # Backfill to a datetime in the middle and to an offset, each replayed exactly.
    v.backfill(Target.from_options(to_datetime=format_ms(MIDDLE_MS)))
    v.consume_all()
    assert_exact(v)
    assert v.rows() == live
    v.backfill(Target.from_options(shift_by=-(HORIZON + 70)))
    v.consume_all()
    assert v.rows() == live

    # A store whose event-id window is gone (written before deduplication existed): the
    # window is read again from the log, so new retries are still recognised.
    for name, store in v.stores.items():
        store.close()
        db = sqlite3.connect(sqlite_path(None, v.settings.data_dir, VIEWS[name].name))
        db.execute("DELETE FROM event_ids")
        db.commit()
        db.close()
        v.stores[name] = open_view_store(None, v.settings.data_dir, VIEWS[name])
    tail = events[-300:]  # copies of recent events: within the horizon of their first copies
    produce_likes(v.settings.bootstrap_servers, v.topic, tail[:50], codec)
    v.consume_all()
    assert_exact(v)
    live = v.rows()

    # A rebuild from scratch (new groups, new stores, other batch sizes) equals the live build.
    rebuilt = Views(
        v.settings.model_copy(
            update={
                "data_dir": tmp_path / "rebuilt",
                "flush_max_keys": 5000,
                "consume_batch_size": 1000,
            }
        ),
        codec,
        v.topic,
        unique_name(),
    )
    try:
        rebuilt.consume_all()
        assert rebuilt.rows() == live
    finally:
        rebuilt.close()
