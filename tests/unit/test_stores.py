"""View stores: SQLite always, PostgreSQL when LOGSTREAM_TEST_PG_DSN is set (.ci/postgres.sh)."""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from logstream.errors import StaleOffsetError, StoreError
from logstream.stores import (
    BucketRow,
    Counter,
    Flush,
    Position,
    Reset,
    SeriesKey,
    ViewStore,
    drop_store,
    open_store,
)
from logstream.stores.base import EventIdRange, safe_name, window_bounds
from logstream.stores.factory import sqlite_path
from logstream.stores.postgres import PostgresViewStore, schema_name
from logstream.stores.sqlite import SQLiteViewStore

PG_DSN = os.environ.get("LOGSTREAM_TEST_PG_DSN")
HOUR = 3_600_000
MINUTE = 60_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR  # an hour boundary

Event = tuple[str, str, int]  # (series, key, ts_ms)
MakeStore = Callable[..., ViewStore]

BACKENDS = [
    "sqlite",
    pytest.param(
        "postgres",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(
                not PG_DSN, reason="set LOGSTREAM_TEST_PG_DSN (start one with .ci/postgres.sh)"
            ),
        ],
    ),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(backend: str, tmp_path: Path) -> Iterator[MakeStore]:
    """Open stores of one fresh namespace (several objects = several 'processes'); drop after."""
    namespace = f"test-{uuid.uuid4().hex[:12]}@v1"
    url = PG_DSN if backend == "postgres" else None
    opened: list[ViewStore] = []

    def make(totals_series: Iterable[str] = ("url",), *, time_index: bool = True) -> ViewStore:
        store = open_store(
            url, tmp_path, namespace, frozenset(totals_series), time_index=time_index
        )
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
    drop_store(url, tmp_path, namespace)


def bucket_of(series: str, ts: int) -> int:
    """Series 'w' uses minute buckets, everything else hour buckets."""
    size = MINUTE if series == "w" else HOUR
    return ts - ts % size


def deltas_of(events: Iterable[Event]) -> dict[SeriesKey, Counter]:
    deltas: dict[SeriesKey, Counter] = {}
    for series, key, ts in events:
        address = (series, key, bucket_of(series, ts))
        if address in deltas:
            deltas[address].merge(1, ts)
        else:
            deltas[address] = Counter.of(ts)
    return deltas


def model(
    events: Iterable[Event], totals_series: Iterable[str]
) -> tuple[list[BucketRow], list[tuple[str, str, int, int, int]]]:
    """The state a from-scratch computation over `events` must give."""
    deltas = deltas_of(events)
    buckets = sorted((s, k, b, c.count, c.first_ms, c.last_ms) for (s, k, b), c in deltas.items())
    totals: dict[tuple[str, str], Counter] = {}
    for (s, k, _b), c in deltas.items():
        if s not in totals_series:
            continue
        if (s, k) in totals:
            totals[(s, k)].merge_counter(c)
        else:
            totals[(s, k)] = Counter(c.count, c.first_ms, c.last_ms)
    return buckets, sorted((s, k, c.count, c.first_ms, c.last_ms) for (s, k), c in totals.items())


def random_events(rng: random.Random, n: int, keys: int = 20, hours: int = 12) -> list[Event]:
    """Events over `hours`, including late ones (not sorted by time)."""
    events: list[Event] = []
    for _ in range(n):
        ts = T0 + rng.randrange(hours * HOUR)
        events.append(("url", f"https://k{rng.randrange(keys)}", ts))
        events.append(("user", f"u{rng.randrange(keys // 2)}", ts))
        events.append(("w", "", ts))
    return events


def commit_in_batches(
    store: ViewStore, events: list[Event], topic: str = "t", partition: int = 0, batch: int = 50
) -> int:
    """Commit events as if each batch came from offsets of one partition; the next offset."""
    stored = store.positions().get((topic, partition))
    offset = 0 if stored is None else stored.next_offset
    expected: int | None = None if stored is None else stored.next_offset
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        new = offset + len(chunk)
        store.commit(
            Flush(
                deltas=deltas_of(chunk),
                positions=[(topic, partition, expected, new)],
                max_event_ms=max(ts for _s, _k, ts in chunk),
            )
        )
        offset = expected = new
    return offset


# -- pure helpers ------------------------------------------------------------------------


def test_counter_merge_keeps_span() -> None:
    c = Counter.of(100)
    c.merge(2, 50)
    c.merge_counter(Counter(3, 70, 300))
    assert c == Counter(6, 50, 300)


def test_position_guard_skips_only_old_events_before_guard_offset() -> None:
    pos = Position("t", 0, 10, guard_offset=20, guard_min_ms=1000)
    assert pos.skips(15, 999)
    assert not pos.skips(15, 1000)
    assert not pos.skips(20, 5)
    assert not Position("t", 0, 10).skips(0, 0)


def test_names_are_sanitized() -> None:
    assert safe_name("likes-by-url") == "likes_by_url"
    assert safe_name("likes-by-url@v2") == "likes_by_url__v2"
    assert safe_name("likes-by-url@v2") != safe_name("likes-by-url-v2")
    assert schema_name("public") == "v_public"
    assert schema_name("9lives") == "v_9lives"
    long = schema_name("x" * 100 + "@v1")
    assert len(long) <= 63 and long != schema_name("x" * 100 + "@v2")
    with pytest.raises(ValueError):
        safe_name("@@")


def test_window_bounds_cover_exactly_the_requested_windows() -> None:
    assert window_bounds(10, 15, 35, None) == (10, 40)
    assert window_bounds(10, 15, 30, None) == (10, 30)
    assert window_bounds(10, 15, 35, 20) == (30, 40)


def test_factory_paths_and_errors(tmp_path: Path) -> None:
    assert sqlite_path(None, tmp_path, "likes-by-url@v2") == (
        tmp_path / "views" / "likes_by_url__v2.sqlite"
    )
    assert sqlite_path(f"sqlite:///{tmp_path}/dir/", tmp_path, "a") == tmp_path / "dir" / "a.sqlite"
    assert sqlite_path(f"sqlite:///{tmp_path}/one.db", tmp_path, "a") == tmp_path / "one.db"
    with pytest.raises(StoreError) as info:
        open_store("mysql://root:hunter2@db/x", tmp_path, "a", frozenset())
    assert "mysql" in str(info.value) and "hunter2" not in str(info.value)


def test_sqlite_file_refuses_a_second_view_and_changed_totals(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shared.sqlite"
    open_store(url, tmp_path, "a", frozenset({"url"})).close()
    with pytest.raises(StoreError, match="belongs to view 'a'"):
        open_store(url, tmp_path, "b", frozenset({"url"}))
    with pytest.raises(StoreError, match="bump the view version"):
        open_store(url, tmp_path, "a", frozenset({"user"}))
    with pytest.raises(StoreError, match="belongs to view 'a'"):
        drop_store(url, tmp_path, "b")
    assert drop_store(url, tmp_path, "a")
    assert not (tmp_path / "shared.sqlite").exists()
    assert not drop_store(url, tmp_path, "a")


# -- both backends -----------------------------------------------------------------------


def test_commit_adds_and_merges(make_store: MakeStore) -> None:
    store = make_store()
    store.commit(
        Flush(
            deltas={("url", "a", T0): Counter(2, T0 + 5, T0 + 9)},
            positions=[("t", 0, None, 2)],
            max_event_ms=T0 + 9,
        )
    )
    store.commit(
        Flush(
            deltas={
                ("url", "a", T0): Counter(1, T0 + 1, T0 + 1),
                ("url", "a", T0 + HOUR): Counter(1, T0 + HOUR, T0 + HOUR),
            },
            positions=[("t", 0, 2, 4)],
            max_event_ms=T0 + 1,  # older than the stored max: must not lower it
            dlq_increment=3,
        )
    )
    assert store.bucket_rows() == [
        ("url", "a", T0, 3, T0 + 1, T0 + 9),
        ("url", "a", T0 + HOUR, 1, T0 + HOUR, T0 + HOUR),
    ]
    assert store.total("url", "a") == Counter(4, T0 + 1, T0 + HOUR)
    assert store.total("url", "missing") is None
    assert store.positions() == {("t", 0): Position("t", 0, 4)}
    stats = store.stats()
    assert (stats.max_event_ms, stats.dlq_count, stats.skipped) == (T0 + 9, 3, [])


def test_empty_flush_moves_offsets_only(make_store: MakeStore) -> None:
    store = make_store()
    store.commit(Flush(deltas={}, positions=[("t", 0, None, 7)], dlq_increment=7))
    assert store.positions()[("t", 0)].next_offset == 7
    assert store.bucket_rows() == []
    assert store.stats().max_event_ms is None and store.stats().dlq_count == 7


def test_totals_only_for_totals_series(make_store: MakeStore) -> None:
    store = make_store(totals_series={"url"})
    events = random_events(random.Random(1), 200)
    commit_in_batches(store, events)
    buckets, totals = model(events, {"url"})
    assert store.bucket_rows() == buckets
    assert store.totals_rows() == totals
    assert {row[0] for row in store.totals_rows()} == {"url"}
    # A series without totals still answers total() from its buckets.
    w_total = next(row for row in model(events, {"w"})[1] if row[0] == "w")
    assert store.total("w", "") == Counter(*w_total[2:])


def test_fencing_rejects_stale_flush_and_applies_nothing(make_store: MakeStore) -> None:
    store = make_store()
    store.commit(
        Flush({("url", "a", T0): Counter.of(T0)}, [("t", 0, None, 10), ("t", 1, None, 5)], T0)
    )
    before = (store.bucket_rows(), store.totals_rows(), store.stats())

    bad_flushes = [
        Flush({("url", "a", T0): Counter.of(T0 + 1)}, [("t", 0, 9, 12)], T0 + HOUR),
        # Expected "no row" but the row exists (another consumer got there first).
        Flush({("url", "a", T0): Counter.of(T0 + 1)}, [("t", 0, None, 12)], T0 + HOUR),
        # First partition fine, second stale: the first must be rolled back too.
        Flush(
            {("url", "b", T0): Counter.of(T0 + 1)},
            [("t", 0, 10, 12), ("t", 1, 4, 6)],
            T0 + HOUR,
            dlq_increment=1,
        ),
    ]
    for flush in bad_flushes:
        with pytest.raises(StaleOffsetError):
            store.commit(flush)
        assert (store.bucket_rows(), store.totals_rows(), store.stats()) == before

    store.commit(Flush({}, [("t", 0, 10, 11)]))  # the store is still usable
    assert store.positions()[("t", 0)].next_offset == 11


def test_zombie_loses_against_new_owner(make_store: MakeStore) -> None:
    owner, zombie = make_store(), make_store()
    owner.commit(Flush({("url", "a", T0): Counter.of(T0)}, [("t", 0, None, 1)]))
    zombie_start = 1
    owner.commit(Flush({("url", "a", T0): Counter.of(T0)}, [("t", 0, 1, 2)]))
    with pytest.raises(StaleOffsetError):
        zombie.commit(Flush({("url", "a", T0): Counter.of(T0)}, [("t", 0, zombie_start, 2)]))
    assert owner.total("url", "a") == Counter(2, T0, T0)


def test_reset_drop_from_matches_recomputation(make_store: MakeStore) -> None:
    totals_series = {"url", "user"}
    store = make_store(totals_series=totals_series)
    rng = random.Random(7)
    events = random_events(rng, 600)  # late events included: not sorted by time
    end = commit_in_batches(store, events)
    assert (store.bucket_rows(), store.totals_rows()) == model(events, totals_series)

    drop_from = T0 + 5 * HOUR
    guard = Position("t", 0, 0, guard_offset=end, guard_min_ms=drop_from)
    store.reset(Reset(positions=[guard], drop_from_ms=drop_from))
    kept = [e for e in events if bucket_of(e[0], e[2]) < drop_from]
    assert (store.bucket_rows(), store.totals_rows()) == model(kept, totals_series)
    assert store.positions() == {("t", 0): guard}
    assert store.stats().max_event_ms == max(ts for *_x, ts in events)  # kept on a ranged drop

    # Replay the log from offset 0 as the runtime would: skip the guarded old events.
    replay = [e for offset, e in enumerate(events) if not guard.skips(offset, e[2])]
    store.commit(Flush(deltas_of(replay), [("t", 0, 0, end)]))
    assert (store.bucket_rows(), store.totals_rows()) == model(events, totals_series)
    assert store.positions() == {("t", 0): Position("t", 0, end)}  # guard passed: cleared


def test_guard_survives_until_passed(make_store: MakeStore) -> None:
    store = make_store()
    store.reset(Reset([Position("t", 0, 0, guard_offset=100, guard_min_ms=T0)], drop_from_ms=T0))
    store.commit(Flush({}, [("t", 0, 0, 50)]))
    assert store.positions()[("t", 0)] == Position("t", 0, 50, 100, T0)
    store.commit(Flush({}, [("t", 0, 50, 100)]))
    assert store.positions()[("t", 0)] == Position("t", 0, 100)


def test_reset_none_wipes_everything_but_dlq(make_store: MakeStore) -> None:
    store = make_store()
    commit_in_batches(store, random_events(random.Random(3), 50), partition=0)
    commit_in_batches(store, random_events(random.Random(4), 50), partition=1)
    store.commit(Flush({}, [("t", 0, 150, 150)], dlq_increment=2))
    store.reset(Reset(positions=[Position("t", 0, 0)], drop_from_ms=None))
    assert store.bucket_rows() == [] and store.totals_rows() == []
    assert store.top("url", 10) == []
    stats = store.stats()
    # Partition 1 was not listed: its stale position must not survive a full wipe.
    assert stats.positions == {("t", 0): Position("t", 0, 0)}
    assert (stats.max_event_ms, stats.dlq_count) == (None, 2)


def test_skipped_ranges_recorded(make_store: MakeStore) -> None:
    store = make_store()
    store.reset(
        Reset(
            positions=[Position("t", 0, 500), Position("t", 1, 70)],
            drop_from_ms=T0,
            skipped=[("t", 0, 100, 500), ("t", 1, 0, 70)],
        )
    )
    store.reset(Reset([Position("t", 0, 600)], drop_from_ms=T0, skipped=[("t", 0, 500, 600)]))
    assert store.stats().skipped == [("t", 0, 100, 500), ("t", 1, 0, 70), ("t", 0, 500, 600)]
    assert store.positions()[("t", 0)].next_offset == 600


def test_top_ordering_ties_and_range(make_store: MakeStore) -> None:
    store = make_store()
    counts = {"b": (3, 0), "a": (3, 1), "c": (5, 0), "é": (1, 1), "Z": (1, 0)}
    deltas = {}
    for key, (n, hour) in counts.items():
        deltas[("url", key, T0 + hour * HOUR)] = Counter(n, T0 + hour * HOUR, T0 + hour * HOUR)
    deltas[("url", "a", T0 + 2 * HOUR)] = Counter(4, T0 + 2 * HOUR, T0 + 2 * HOUR)
    store.commit(Flush(deltas, [("t", 0, None, 1)]))
    # Ties broken by key in code-point order ("Z" < "a" < "é"), as SQLite and COLLATE "C" do.
    assert store.top("url", 10) == [("a", 7), ("c", 5), ("b", 3), ("Z", 1), ("é", 1)]
    assert store.top("url", 2) == [("a", 7), ("c", 5)]
    assert store.top("url", 0) == []
    assert store.top("url", 10, since_ms=T0, until_ms=T0 + HOUR) == [
        ("c", 5),
        ("b", 3),
        ("Z", 1),
    ]
    assert store.top("url", 10, since_ms=T0 + HOUR) == [("a", 7), ("é", 1)]
    assert store.top("url", 10, until_ms=T0 + 2 * HOUR)[0] == ("c", 5)
    assert store.top("other", 10) == []


def cast_pg(store: ViewStore) -> PostgresViewStore:
    assert isinstance(store, PostgresViewStore)
    return store


def _has_time_index(store: ViewStore) -> bool:
    if isinstance(store, SQLiteViewStore):
        with sqlite3.connect(store.path) as db:
            row = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'buckets_by_time'"
            ).fetchone()
        return row is not None
    import psycopg

    with psycopg.connect(PG_DSN) as conn:
        row = conn.execute(
            "SELECT to_regclass(%s)",
            (f'"{schema_name(cast_pg(store).namespace)}".buckets_by_time',),
        ).fetchone()
    return row is not None and row[0] is not None


def test_time_index_follows_the_view_and_answers_stay_the_same(make_store: MakeStore) -> None:
    """Views that never rank over a time range skip the index; adding it later is safe."""
    events = random_events(random.Random(7), 300)
    plain = make_store(time_index=False)
    commit_in_batches(plain, events)
    assert not _has_time_index(plain)
    ranged = plain.top("url", 5, since_ms=T0 + 2 * HOUR, until_ms=T0 + 6 * HOUR)
    assert ranged  # the range holds events
    plain.close()
    indexed = make_store(time_index=True)  # the view now ranks over time: index built on open
    assert _has_time_index(indexed)
    assert indexed.top("url", 5, since_ms=T0 + 2 * HOUR, until_ms=T0 + 6 * HOUR) == ranged
    assert make_store(time_index=False) and not _has_time_index(indexed)


def test_top_without_totals_aggregates_buckets(make_store: MakeStore) -> None:
    store = make_store(totals_series=())
    store.commit(
        Flush(
            {("url", "a", T0): Counter(1, T0, T0), ("url", "b", T0 + HOUR): Counter(2, T0, T0)},
            [("t", 0, None, 1)],
        )
    )
    assert store.top("url", 5) == [("b", 2), ("a", 1)]


def test_windows_alignment_range_and_cursor(make_store: MakeStore) -> None:
    store = make_store(totals_series=())
    deltas = {
        ("w", "", T0 + m * MINUTE): Counter(i + 1, T0, T0) for i, m in enumerate(range(0, 60, 7))
    }
    deltas[("w", "other", T0)] = Counter(100, T0, T0)
    store.commit(Flush(deltas, [("t", 0, None, 1)]))
    ten = 10 * MINUTE
    # minutes 0,7,14,...,56 -> 10-minute windows 0:(1+2) 10:(3) 20:(4+5) 30:(6) 40:(7+8) 50:(9)
    full = [
        (T0, 3),
        (T0 + ten, 3),
        (T0 + 2 * ten, 9),
        (T0 + 3 * ten, 6),
        (T0 + 4 * ten, 15),
        (T0 + 5 * ten, 9),
    ]
    assert store.windows("w", "", ten, T0, T0 + HOUR, 100) == full
    # since is aligned down; until is exclusive on the window start.
    assert store.windows("w", "", ten, T0 + 15 * MINUTE, T0 + 3 * ten, 100) == full[1:3]
    assert store.windows("w", "", ten, T0, T0 + 3 * ten + 1, 100) == full[:4]
    # Paging with the cursor visits every window once.
    pages, cursor = [], None
    while True:
        page = store.windows("w", "", ten, T0, T0 + HOUR, 4, after_start_ms=cursor)
        if not page:
            break
        pages.extend(page)
        cursor = page[-1][0]
    assert pages == full
    # Windows larger than buckets, and empty windows omitted.
    assert store.windows("w", "", HOUR, T0 - HOUR, T0 + 2 * HOUR, 10) == [(T0, 45)]
    assert store.windows("w", "none", ten, T0, T0 + HOUR, 10) == []
    with pytest.raises(ValueError):
        store.windows("w", "", 0, T0, T0 + HOUR, 10)


def test_concurrent_writers_with_overlapping_keys_sum_exactly(make_store: MakeStore) -> None:
    """Disjoint partitions, same keys, opposite orders: exact sums and no deadlock."""
    writers = 4
    flushes = 30
    stores = [make_store(totals_series={"url"}) for _ in range(writers)]
    keys = [f"k{i:03d}" for i in range(200)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(writers)

    def run(index: int) -> None:
        try:
            store = stores[index]
            rng = random.Random(index)
            barrier.wait()
            offset: int | None = None
            for _ in range(flushes):
                order = keys if index % 2 == 0 else list(reversed(keys))
                deltas: dict[SeriesKey, Counter] = {}
                for key in order:  # insertion order differs; the store must sort
                    for hour in (0, 1):
                        ts = T0 + hour * HOUR + rng.randrange(HOUR)
                        deltas[("url", key, T0 + hour * HOUR)] = Counter(1, ts, ts)
                new = (offset or 0) + 1
                store.commit(Flush(deltas, [("t", index, offset, new)], max_event_ms=T0))
                offset = new
        except BaseException as exc:  # reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "writers hung (deadlock?)"
    assert errors == []
    check = stores[0]
    rows = check.bucket_rows()
    assert len(rows) == len(keys) * 2
    assert {row[3] for row in rows} == {writers * flushes}
    assert check.top("url", 3) == [(k, 2 * writers * flushes) for k in keys[:3]]
    assert {p.next_offset for p in check.positions().values()} == {flushes}
    for series, key, count, first, last in check.totals_rows():
        in_buckets = [r for r in rows if (r[0], r[1]) == (series, key)]
        assert count == sum(r[3] for r in in_buckets)
        assert (first, last) == (min(r[4] for r in in_buckets), max(r[5] for r in in_buckets))


def test_reset_fences_a_flush_that_began_before_it(make_store: MakeStore) -> None:
    consumer, planner = make_store(), make_store()
    consumer.commit(Flush({("url", "a", T0): Counter.of(T0)}, [("t", 0, None, 1)]))
    planner.reset(Reset([Position("t", 0, 0)], drop_from_ms=None))
    with pytest.raises(StaleOffsetError):
        consumer.commit(Flush({("url", "a", T0): Counter.of(T0)}, [("t", 0, 1, 2)]))
    assert consumer.bucket_rows() == []


def test_state_survives_reopen(make_store: MakeStore) -> None:
    store = make_store()
    store.commit(Flush({("url", "a", T0): Counter.of(T0)}, [("t", 0, None, 1)], T0))
    store.close()
    store.close()  # idempotent
    again = make_store()
    assert again.total("url", "a") == Counter.of(T0)
    assert again.stats().max_event_ms == T0


def test_changed_totals_series_is_refused(make_store: MakeStore) -> None:
    make_store(totals_series={"url"})
    with pytest.raises(StoreError, match="bump the view version"):
        make_store(totals_series={"url", "user"})


def _ids_range(start: int, end: int) -> EventIdRange:
    return EventIdRange("t", 0, start, end, f"{start}-{end}".encode())


def test_event_id_ranges_commit_with_their_flush_expire_and_reset(make_store: MakeStore) -> None:
    store = make_store()
    store.commit(Flush({}, [("t", 0, None, 10)], event_ids=[_ids_range(0, 10)]))
    store.commit(Flush({}, [("t", 0, 10, 20)], event_ids=[_ids_range(10, 20)]))
    assert [(r.from_offset, r.to_offset) for r in store.event_id_ranges("t", 0, 0)] == [
        (0, 10),
        (10, 20),
    ]
    assert store.event_id_ranges("t", 0, 0)[1].payload == b"10-20"
    # A fenced flush stores no range.
    with pytest.raises(StaleOffsetError):
        store.commit(Flush({}, [("t", 0, 10, 30)], event_ids=[_ids_range(20, 30)]))
    assert [r.to_offset for r in store.event_id_ranges("t", 0, 0)] == [10, 20]
    # Expiry drops ranges ending at or below the horizon start, in the same transaction.
    store.commit(
        Flush(
            {}, [("t", 0, 20, 30)], event_ids=[_ids_range(20, 30)], event_ids_expire=[("t", 0, 10)]
        )
    )
    assert [r.from_offset for r in store.event_id_ranges("t", 0, 0)] == [10, 20]
    assert [r.from_offset for r in store.event_id_ranges("t", 0, 20)] == [20]
    # A range must end where its partition's flush ends.
    with pytest.raises(ValueError, match="does not end"):
        store.commit(Flush({}, [("t", 0, 30, 40)], event_ids=[_ids_range(30, 39)]))
    # Moving the partition back drops the ranges reaching past the new offset.
    store.reset(Reset([Position("t", 0, 25)], drop_from_ms=T0))
    assert [r.from_offset for r in store.event_id_ranges("t", 0, 0)] == [10]
    store.reset(Reset([], drop_from_ms=None))
    assert store.event_id_ranges("t", 0, 0) == []


def test_a_v1_sqlite_store_gains_the_event_id_table(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    store = SQLiteViewStore(path, ("url",), namespace="old")
    store.close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE event_ids")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with SQLiteViewStore(path, ("url",), namespace="old") as reopened:
        assert reopened.event_id_ranges("t", 0, 0) == []
        reopened.commit(Flush({}, [("t", 0, None, 1)], event_ids=[_ids_range(0, 1)]))
        assert len(reopened.event_id_ranges("t", 0, 0)) == 1
