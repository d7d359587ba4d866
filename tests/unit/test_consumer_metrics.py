"""`logstream_consumer_events_applied_total` counts events whose flush committed: a flush
refused by fencing or given up (abandoned) is read again later and must not count twice."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from consumers import get_view
from logstream.errors import StaleOffsetError
from logstream.metrics.hooks import ConsumerHooks
from logstream.runtime.committer import Committer
from logstream.runtime.dlq import DeadLetters
from logstream.runtime.retry import Backoff
from logstream.settings import Settings
from logstream.stores.sqlite import SQLiteViewStore
from tests.unit.test_runtime_faults import big_flush, capped, uncapped, wait_until


def applied_total(hooks: ConsumerHooks) -> float:
    return (
        hooks.registry.get_sample_value(
            "logstream_consumer_events_applied_total", {"view": hooks.group}
        )
        or 0.0
    )


def test_only_committed_flushes_count_their_events(tmp_path: Path):
    hooks = ConsumerHooks(Settings(), get_view("likes-by-url"), "v1", port=1)
    store = SQLiteViewStore(tmp_path / "v.sqlite", ["url"])
    committer = Committer(
        store, DeadLetters(Settings(), "v"), "v", backoff=Backoff(30, 30), on_commit=hooks.on_commit
    )

    committer.submit(dataclasses.replace(big_flush(10, None, 10), events=10))
    wait_until(lambda: committer.wait(0.1))
    assert applied_total(hooks) == 10

    # Fenced: the store holds 10, this flush claims to start from 99.
    committer.submit(dataclasses.replace(big_flush(3, 99, 102), events=3))
    deadline = time.monotonic() + 10
    with pytest.raises(StaleOffsetError):
        while not committer.wait(0.1):
            assert time.monotonic() < deadline
    assert applied_total(hooks) == 10

    # Abandoned while the store is full (a rebalance or a stop gives it up).
    capped(store)
    committer.submit(dataclasses.replace(big_flush(3000, 10, 3010), events=3000))
    wait_until(lambda: committer.retrying)
    committer.abandon()
    uncapped(store)

    # The same events read again and committed: counted once, now.
    committer.submit(dataclasses.replace(big_flush(3000, 10, 3010), events=3000))
    wait_until(lambda: committer.wait(0.1))
    assert store.positions()[("t", 0)].next_offset == 3010
    assert applied_total(hooks) == 10 + 3000
    assert (
        hooks.registry.get_sample_value(
            "logstream_consumer_flush_duration_seconds_count", {"view": hooks.group}
        )
        == 2
    )
    committer.close()
    store.close()
