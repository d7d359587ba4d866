"""Fault handling of the consumer runtime without a broker: which store errors are waited
out, the same flush retried after a full store lands exactly once, the commit thread never
blocks its caller, the watchdog fires on stalls only."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from logstream.errors import StaleOffsetError, StoreError
from logstream.runtime.committer import Committer
from logstream.runtime.dlq import DeadLetters
from logstream.runtime.retry import Backoff, is_transient_store_error
from logstream.runtime.watchdog import Watch, Watchdog
from logstream.settings import Settings
from logstream.stores import Counter, Flush
from logstream.stores.sqlite import SQLiteViewStore

T0 = 1_700_000_000_000


def wait_until(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def big_flush(n: int, expected: int | None, new: int) -> Flush:
    """Enough distinct keys to need new pages (so a capped file cannot take it)."""
    deltas = {
        ("url", f"https://example.com/{i:06d}/" + "x" * 80, T0): Counter.of(T0) for i in range(n)
    }
    return Flush(deltas, [("t", 0, expected, new)], T0)


def capped(store: SQLiteViewStore, extra_pages: int = 0) -> None:
    """Make the file 'full': SQLite's page limit gives the very SQLITE_FULL a full disk does."""
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages + extra_pages}")


def uncapped(store: SQLiteViewStore) -> None:
    store._db.execute("PRAGMA max_page_count = 1073741823")


def test_backoff_doubles_up_to_its_cap():
    backoff = Backoff(1.0, 10.0)
    assert [backoff.next_delay() for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    backoff.reset()
    assert backoff.next_delay() == 1


def test_classification():
    def sqlite_error(code: int) -> StoreError:
        cause = sqlite3.OperationalError("x")
        cause.sqlite_errorcode = code  # type: ignore[attr-defined]
        err = StoreError("cannot commit")
        err.__cause__ = cause
        return err

    assert is_transient_store_error(sqlite_error(sqlite3.SQLITE_FULL))
    assert is_transient_store_error(sqlite_error(sqlite3.SQLITE_BUSY))
    assert is_transient_store_error(sqlite_error(sqlite3.SQLITE_IOERR | (4 << 8)))  # IOERR_FSYNC
    assert not is_transient_store_error(sqlite_error(sqlite3.SQLITE_ERROR))
    assert not is_transient_store_error(sqlite_error(sqlite3.SQLITE_CORRUPT))
    assert not is_transient_store_error(StaleOffsetError("moved"))
    assert not is_transient_store_error(StoreError("layout from the future"))
    assert not is_transient_store_error(ValueError("bug"))

    import psycopg

    for error, transient in (
        (psycopg.errors.DiskFull("full"), True),
        (psycopg.errors.AdminShutdown("bye"), True),
        (psycopg.errors.SerializationFailure("again"), True),
        (psycopg.OperationalError("connection refused"), True),
        (psycopg.errors.UndefinedTable("no such table"), False),
    ):
        err = StoreError("cannot commit")
        err.__cause__ = error
        assert is_transient_store_error(err) is transient, error


def test_full_sqlite_store_rolls_back_and_the_same_flush_lands_later(tmp_path: Path):
    store = SQLiteViewStore(tmp_path / "v.sqlite", ["url"])
    store.commit(big_flush(10, None, 10))
    capped(store)
    flush = big_flush(3000, 10, 3010)
    for _ in range(2):  # twice: the failed transaction left the connection clean
        with pytest.raises(StoreError) as caught:
            store.commit(flush)
        assert is_transient_store_error(caught.value), caught.value
        assert "full" in str(caught.value)
    assert store.positions()[("t", 0)].next_offset == 10
    uncapped(store)
    store.commit(flush)
    assert store.positions()[("t", 0)].next_offset == 3010
    assert len(store.totals_rows("url")) == 3000
    assert sum(row[2] for row in store.totals_rows("url")) == 10 + 3000  # once, not twice


def test_committer_retries_a_full_store_without_blocking_and_lands_exactly_once(tmp_path: Path):
    store = SQLiteViewStore(tmp_path / "v.sqlite", ["url"])
    store.commit(big_flush(10, None, 10))
    capped(store)
    committer = Committer(store, DeadLetters(Settings(), "v"), "v", backoff=Backoff(0.05, 0.2))
    committer.submit(big_flush(3000, 10, 3010))
    wait_until(lambda: committer.retrying)
    started = time.monotonic()
    assert committer.wait(0.1) is False  # the caller gets its thread back
    assert time.monotonic() - started < 1.0
    assert committer.take_offsets() == []  # Kafka offsets only after the store transaction
    uncapped(store)
    wait_until(lambda: committer.wait(0.1))
    assert not committer.retrying
    sent = committer.take_offsets()
    assert [(tp.topic, tp.partition, tp.offset) for tp in sent] == [("t", 0, 3010)]
    assert committer.take_offsets() == []
    assert store.positions()[("t", 0)].next_offset == 3010
    assert len(store.totals_rows("url")) == 3000
    committer.close()


def test_committer_abandon_stops_retrying_and_stores_nothing(tmp_path: Path):
    store = SQLiteViewStore(tmp_path / "v.sqlite", ["url"])
    store.commit(big_flush(10, None, 10))
    capped(store)
    committer = Committer(store, DeadLetters(Settings(), "v"), "v", backoff=Backoff(30, 30))
    committer.submit(big_flush(3000, 10, 3010))
    wait_until(lambda: committer.retrying)
    committer.abandon()  # cuts the 30 s backoff short
    assert committer.idle and committer.wait(0) is True
    uncapped(store)
    time.sleep(0.2)
    assert store.positions()[("t", 0)].next_offset == 10
    committer.submit(big_flush(5, 10, 15))  # the worker is free for the next flush
    wait_until(lambda: committer.wait(0.1))
    assert store.positions()[("t", 0)].next_offset == 15
    committer.close()


def test_committer_non_transient_errors_are_raised_as_before(tmp_path: Path):
    store = SQLiteViewStore(tmp_path / "v.sqlite", ["url"])
    committer = Committer(store, DeadLetters(Settings(), "v"), "v")
    committer.submit(big_flush(1, 99, 100))  # fenced: the store has no row at 99
    deadline = time.monotonic() + 10
    with pytest.raises(StaleOffsetError):
        while not committer.wait(0.1):
            assert time.monotonic() < deadline
    committer.close()


def test_watchdog_fires_once_on_a_stale_watch_and_never_on_fresh_ones():
    fired: list[str] = []
    last = [time.monotonic()]
    dog = Watchdog(
        "v",
        [
            Watch("fresh", lambda: 0.0, 0.2),
            Watch("idle", lambda: None, 0.2),
            Watch("the loop made no round", lambda: time.monotonic() - last[0], 0.3),
        ],
        fired.append,
        check_every_s=0.02,
    )
    dog.start()
    for _ in range(20):  # beats keep it quiet
        last[0] = time.monotonic()
        time.sleep(0.02)
    assert fired == []
    wait_until(lambda: fired, 5)
    time.sleep(0.1)
    assert len(fired) == 1 and "the loop made no round" in fired[0]
    dog.stop()


def test_watchdog_stop_silences_it():
    fired: list[str] = []
    dog = Watchdog("v", [Watch("x", lambda: 99.0, 1.0)], fired.append, check_every_s=0.05)
    dog.stop()
    dog.start()
    time.sleep(0.2)
    assert fired == []
