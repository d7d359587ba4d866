"""A long read of a SQLite view store does not hold up the others (issue 11: "one ranged
`top` scan blocks every other read of that view"): reads use connections of their own."""

from __future__ import annotations

import threading
import time

from logstream.stores.base import Counter, Flush
from logstream.stores.sqlite import SQLiteViewStore

HOUR = 3_600_000
T0 = 1_767_225_600_000


def _filled(path) -> SQLiteViewStore:
    store = SQLiteViewStore(path, {"url"}, time_index=True)
    deltas = {
        ("url", f"https://example.com/{k}", T0 + h * HOUR): Counter(1 + (k * h) % 7, T0, T0)
        for k in range(2_000)
        for h in range(100)
    }
    store.commit(Flush(deltas, [("likes", 0, None, len(deltas))]))
    return store


def test_a_ranged_scan_does_not_block_a_lookup(tmp_path):
    store = _filled(tmp_path / "v.sqlite")
    try:
        started = time.perf_counter()
        store.rank("url", "count", 10, T0, T0 + 100 * HOUR)
        scan_s = time.perf_counter() - started
        scanning = threading.Event()
        done = threading.Event()

        def scan() -> None:
            scanning.set()
            for _ in range(3):
                store.rank("url", "count", 10, T0, T0 + 100 * HOUR)
            done.set()

        thread = threading.Thread(target=scan)
        thread.start()
        scanning.wait(5)
        lookups = []
        while not done.is_set():
            began = time.perf_counter()
            assert store.total("url", "https://example.com/3") is not None
            lookups.append(time.perf_counter() - began)
        thread.join()
        slowest = max(lookups)
        print(
            f"\nranged scan {scan_s * 1000:.0f} ms; {len(lookups)} lookups meanwhile, "
            f"slowest {slowest * 1000:.1f} ms"
        )
        assert len(lookups) > 10
        assert slowest < scan_s / 2
    finally:
        store.close()
