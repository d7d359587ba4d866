"""Metrics equal what was sent and applied, across ingest workers; lag (offsets and seconds)
rises while a consumer is stopped and returns to 0 after it restarts.

Real processes, as `make up` runs them: `logstream ingest --workers 2` and one
`logstream consume VIEW --metrics-port P` per view, on a private topic prefix.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from consumers import VIEWS
from tests.integration.processes import Stack, lag_offsets, like, post, run_stack, value, wait_for


@pytest.fixture
def stack(kafka_bootstrap: str, admin: Any, unique_name: Any, tmp_path: Path) -> Iterator[Stack]:
    yield from run_stack(kafka_bootstrap, admin, unique_name, tmp_path, workers=2)


def multiprocess_dir_of(ingest_pid: int) -> Path:
    """The folder uvicorn's workers write their metrics to (from a worker's environment)."""
    children = Path(f"/proc/{ingest_pid}/task/{ingest_pid}/children").read_text().split()
    for child in children:
        environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        for entry in environ:
            if entry.startswith(b"PROMETHEUS_MULTIPROC_DIR="):
                return Path(entry.split(b"=", 1)[1].decode())
    raise AssertionError(f"no worker of {ingest_pid} runs in multiprocess mode")


def workers_that_counted(shared: Path) -> set[str]:
    """Pids whose counter file holds HTTP requests (> 0)."""
    pids = set()
    for path in shared.glob("counter_*.db"):
        values = MmapedDict(str(path), read_mode=True)
        try:
            counted = sum(
                v for key, v, _ts in values.read_all_values() if "logstream_http_requests" in key
            )
        finally:
            values.close()
        if counted > 0:
            pids.add(path.stem.split("_")[-1])
    return pids


def test_counters_equal_what_was_sent_and_applied_and_lag_rises_and_recovers(stack: Stack):
    singles, batches, batch_size = 30, 2, 25
    for i in range(singles):
        assert post(stack.base, "/v1/events/likes", like(i)).status_code == 202
    for b in range(batches):
        body = [like(1000 + b * batch_size + j) for j in range(batch_size)]
        assert post(stack.base, "/v1/events/likes/batch", body).status_code == 202
    invalid_singles = 3
    for _ in range(invalid_singles):
        assert post(stack.base, "/v1/events/likes", {"url": "x"}).status_code == 422
    bad_batch = [like(1), like(2), {"user_id": "no url"}, like(3)]
    assert post(stack.base, "/v1/events/likes/batch", bad_batch).status_code == 422
    assert post(stack.base, "/v1/events/shares", like(1)).status_code == 404
    sent = singles + batches * batch_size

    # Every scrape (whichever worker answers it) sums both workers: at once for the worker
    # that answers (it folds its tally first), within a second for the other (its folds).
    def mismatches(server: Any) -> list[str]:
        requests = "logstream_http_requests_total"
        expected = [
            (("logstream_ingest_events_accepted_total", {"event_type": "likes"}), sent),
            (
                ("logstream_ingest_events_rejected_total", {"reason": "validation_failed"}),
                invalid_singles + len(bad_batch),
            ),
            (("logstream_ingest_events_rejected_total", {"reason": "unknown_event_type"}), 1),
            ((requests, {"route": "/v1/events/likes", "status": "202"}), singles),
            ((requests, {"route": "/v1/events/likes/batch", "status": "202"}), batches),
            ((requests, {"route": "/v1/events/{event_type}", "status": "404"}), 1),
            (
                (
                    "logstream_http_request_duration_seconds_count",
                    {"route": "/v1/events/likes"},
                ),
                singles + invalid_singles,
            ),
            (("logstream_ingest_broker_ack_seconds_count", {}), singles + batches),
        ]
        return [
            f"{name} {labels}: {value(server, name, **labels)} != {want}"
            for (name, labels), want in expected
            if value(server, name, **labels) != want
        ]

    wait_for("a scrape sums both workers' counts", lambda: not mismatches(stack.server()), 10)
    for _ in range(4):
        server = stack.server()
        assert not mismatches(server)
        routes = {dict(labels).get("route", "") for (_n, labels) in server}
        assert not any("example.com" in r or "shares" in r for r in routes), routes

    # ... because the workers run in multiprocess mode: each writes its own files. Both
    # workers must have counted requests, else the sums above prove nothing.
    shared = multiprocess_dir_of(stack.procs["ingest"].pid)

    def both_counted() -> bool:
        if len(workers_that_counted(shared)) >= 2:
            return True
        for _ in range(10):  # new connections: the kernel spreads them over the workers
            httpx.get(f"{stack.base}/healthz", timeout=10)
        return False

    wait_for("both ingest workers counted requests", both_counted)
    assert len(workers_that_counted(shared)) == 2, workers_that_counted(shared)

    # Each consumer applied exactly what was sent; nothing is behind.
    for view in VIEWS:
        wait_for(
            f"{view} applied {sent}",
            lambda v=view: (
                value(stack.consumer(v), "logstream_consumer_events_applied_total") == sent
            ),
        )
        mine = stack.consumer(view)
        assert value(mine, "logstream_consumer_dead_letters_total") == 0
        assert value(mine, "logstream_consumer_flushes_total") >= 1
        assert value(mine, "logstream_consumer_flush_duration_seconds_count") >= 1
        assert value(mine, "logstream_consumer_batch_messages_sum") >= sent
        assert value(mine, "logstream_consumer_rebalances_total") >= 1
        assert value(mine, "process_resident_memory_bytes") > 0
        wait_for(f"{view} lag 0", lambda v=view: lag_offsets(stack.consumer(v), v) == 0)
        assert value(stack.consumer(view), "logstream_view_lag_seconds", view=view) == 0

    # Stop one consumer: its lag grows by exactly what arrives, and its lag in seconds is how
    # long ago the oldest record it has not applied arrived, whatever the events' own times:
    # one from the future, one at the epoch, one backdated by a year.
    victim = "likes-by-url"
    stack.stop(victim)
    now_ms = int(time.time() * 1000)
    event_times = [now_ms + 1_800_000, 0, now_ms - 365 * 86_400_000]
    sent_at = []  # (before, after) each post
    for i, occurred_at in enumerate(event_times * 3):
        body = like(5000 + i, occurred_at=occurred_at)
        sent_at.append(time.time())
        assert post(stack.base, "/v1/events/likes", body).status_code == 202
        sent_at.append(time.time())
    first_sent, first_written = sent_at[0], sent_at[1]
    late = len(event_times) * 3
    wait_for("lag offsets = late", lambda: lag_offsets(stack.server(), victim) == late)
    wait_for(
        "lag seconds >= 4",
        lambda: value(stack.server(), "logstream_view_lag_seconds", view=victim) >= 4,
    )
    before = time.time()
    seconds = value(stack.server(), "logstream_view_lag_seconds", view=victim)
    after = time.time()
    # The arrival is interpolated between the two log-end samples around it: off by at most
    # their distance, LOGSTREAM_LAG_SAMPLE_INTERVAL_S (1 s) when the sampler keeps time; 2 s
    # leaves room for a sampling round delayed on a loaded machine.
    tolerance = 2.0
    assert before - first_written - tolerance <= seconds <= after - first_sent + tolerance
    for other in VIEWS:
        if other != victim:
            wait_for(f"{other} back to 0", lambda v=other: lag_offsets(stack.server(), v) == 0)
            assert value(stack.server(), "logstream_view_lag_seconds", view=other) == 0

    # Restart it: back to 0 in offsets and seconds; the new process applied just those.
    stack.start_consumer(victim)
    wait_for("restarted lag 0", lambda: lag_offsets(stack.server(), victim) == 0)
    assert value(stack.server(), "logstream_view_lag_seconds", view=victim) == 0
    wait_for(
        "restarted consumer applied the late events",
        lambda: value(stack.consumer(victim), "logstream_consumer_events_applied_total") == late,
    )
    assert lag_offsets(stack.consumer(victim), victim) == 0
    status = httpx.get(f"{stack.base}/v1/status").json()
    by_view = {v["view"]: v for v in status["views"]}
    assert by_view[victim]["lag_offsets"] == 0
    assert by_view[victim]["applied"] == sent + late
    assert status["ingest"]["events_accepted"] == sent + late

    # LOGSTREAM_LOG_FORMAT=json (set for the whole stack): Python's log records are JSON
    # objects, the consumers' with their view and the partitions they were assigned.
    text_record = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d\S* (INFO|WARNING|ERROR) ")
    for name in ("ingest", *VIEWS):
        lines = (stack.logs / f"{name}.log").read_text(errors="replace").splitlines()
        assert not [ln for ln in lines if text_record.match(ln) or ln.startswith("INFO:")]
        records = [json.loads(ln) for ln in lines if ln.startswith("{")]
        assert records, name
        if name != "ingest":
            assigned = [r for r in records if r.get("partitions")]
            assert assigned and all(r["view"] == name for r in assigned), name
