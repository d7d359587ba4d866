"""Two consumer processes of one group share a PostgreSQL store; a rebalance mid-stream
(the second joins, then the first leaves) still gives exact counts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from consumers import VIEWS
from logstream.codec import Codec
from logstream.schemas import SchemaCatalogue
from logstream.settings import Settings
from logstream.stores.factory import drop_store, open_view_store
from tests.integration.likes import expected_views, generate_likes, produce_likes

PG_DSN = os.environ.get("LOGSTREAM_TEST_PG_DSN")
pytestmark = pytest.mark.skipif(not PG_DSN, reason="LOGSTREAM_TEST_PG_DSN not set")
SCRIPT = Path(__file__).with_name("run_view.py")


def test_two_processes_with_a_rebalance_are_exact(
    kafka_bootstrap, make_topic, tmp_path, unique_name
):
    codec = Codec(SchemaCatalogue.load(Settings().resolved_schema_dir))
    topic = make_topic(partitions=6)
    events = generate_likes(40_000, seed=99)
    produce_likes(kafka_bootstrap, topic, events, codec)
    namespace = unique_name("pg-url")
    group = unique_name("pg-group")
    env = {
        **os.environ,
        "LOGSTREAM_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LOGSTREAM_STORE_URL": str(PG_DSN),
        "LOGSTREAM_DATA_DIR": str(tmp_path),
        "LOGSTREAM_TEST_TOPIC": topic,
        "LOGSTREAM_TEST_NAMESPACE": namespace,
        "LOGSTREAM_FLUSH_MAX_KEYS": "300",
        "LOGSTREAM_CONSUME_BATCH_SIZE": "500",
    }
    view = VIEWS["likes-by-url"]
    store = open_view_store(PG_DSN, tmp_path, view, namespace)
    try:

        def start() -> subprocess.Popen[str]:
            return subprocess.Popen(
                [sys.executable, str(SCRIPT), view.name, group, "--forever"],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )

        first = start()
        _wait_for_progress(store, minimum=1)
        second = start()  # rebalance: partitions split between the two
        _wait_for_progress(store, minimum=len(events) // 3)
        first.send_signal(signal.SIGTERM)  # rebalance again: the second takes everything
        first_result = json.loads(first.communicate(timeout=60)[0])
        deadline = time.monotonic() + 120
        while _applied(store) < len(events) and time.monotonic() < deadline:
            time.sleep(0.5)
        second.send_signal(signal.SIGTERM)
        second_result = json.loads(second.communicate(timeout=60)[0])

        assert first_result["events_applied"] > 0
        assert second_result["events_applied"] > 0
        assert first_result["events_applied"] + second_result["events_applied"] >= len(events)
        got = {row[1]: (row[2], row[3], row[4]) for row in store.totals_rows("url")}
        assert got == expected_views(events).url
        assert _applied(store) == len(events)
    finally:
        store.close()
        drop_store(PG_DSN, tmp_path, namespace)


def _applied(store) -> int:
    return sum(p.next_offset for p in store.positions().values())


def _wait_for_progress(store, minimum: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while _applied(store) < minimum:
        assert time.monotonic() < deadline, "consumers made no progress"
        time.sleep(0.1)
