"""Metrics equal what was sent and applied, across ingest workers; lag (offsets and seconds)
rises while a consumer is stopped and returns to 0 after it restarts.

Real processes, as `make up` runs them: `logstream ingest --workers 2` and one
`logstream consume VIEW --metrics-port P` per view, on a private topic prefix.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from consumers import VIEWS
from logstream.kafka.admin import TopicSpec, create_topics
from tests.conftest import free_port_block

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
DEADLINE_S = 90.0


def scrape(url: str) -> Samples:
    text = httpx.get(url, timeout=10).raise_for_status().text
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels` (0 if none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout_s:.0f}s: {what}")


class Stack:
    """The ingest server and one consumer per view, as child processes."""

    def __init__(self, env: dict[str, str], ingest_port: int, metrics_ports: dict[str, int]):
        self.env = env
        self.base = f"http://127.0.0.1:{ingest_port}"
        self.ports = metrics_ports
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs = Path(env["LOGSTREAM_DATA_DIR"]) / "test-logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: list[str]) -> None:
        with (self.logs / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "logstream", *argv],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def start_consumer(self, view: str) -> None:
        port = str(self.ports[view])
        self.start(view, ["consume", view, "--no-progress", "--metrics-port", port])

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def consumer(self, view: str) -> Samples:
        return scrape(f"http://127.0.0.1:{self.ports[view]}/metrics")

    def server(self) -> Samples:
        return scrape(f"{self.base}/metrics")

    def log_tail(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.logs.glob("*")
        )


@pytest.fixture
def stack(kafka_bootstrap: str, admin: Any, unique_name: Any, tmp_path: Path) -> Iterator[Stack]:
    prefix = unique_name("metrics") + "."
    create_topics(admin, [TopicSpec(prefix + "likes", 3, 1, {})], timeout_s=60)
    ingest_port = free_port_block(1)
    first = free_port_block(len(VIEWS))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")},
        "LOGSTREAM_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LOGSTREAM_DATA_DIR": str(tmp_path / "data"),
        "LOGSTREAM_TOPIC_PREFIX": prefix,
        "LOGSTREAM_FLUSH_INTERVAL_S": "0.2",
        "LOGSTREAM_LOG_FORMAT": "json",
    }
    ports = {name: first + i for i, name in enumerate(VIEWS)}
    running = Stack(env, ingest_port, ports)
    running.start("ingest", ["ingest", "--port", str(ingest_port), "--workers", "2"])
    for view in VIEWS:
        running.start_consumer(view)
    try:
        wait_for("ingest ready", lambda: httpx.get(f"{running.base}/readyz").status_code == 200)
        for view in VIEWS:
            wait_for(f"{view} metrics", lambda v=view: bool(running.consumer(v)))
        yield running
    except BaseException:
        print(running.log_tail())
        raise
    finally:
        running.stop_all()
        admin.delete_topics([prefix + "likes"])


def post(base: str, path: str, body: Any) -> httpx.Response:
    # A new connection per request: uvicorn's workers share the socket, so requests land
    # on both of them and the counts below hold only if a scrape sums every worker.
    return httpx.post(base + path, json=body, timeout=30)


def like(i: int, **extra: Any) -> dict[str, Any]:
    return {"url": f"https://example.com/m/{i % 7}", "user_id": f"u{i % 5}", **extra}


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

    # Every scrape (whichever worker answers it) sums both workers.
    for _ in range(4):
        server = stack.server()
        assert value(server, "logstream_ingest_events_accepted_total", event_type="likes") == sent
        assert value(
            server, "logstream_ingest_events_rejected_total", reason="validation_failed"
        ) == invalid_singles + len(bad_batch)
        assert value(
            server, "logstream_ingest_events_rejected_total", reason="unknown_event_type"
        ) == 1
        requests = "logstream_http_requests_total"
        assert value(server, requests, route="/v1/events/likes", status="202") == singles
        assert value(server, requests, route="/v1/events/likes/batch", status="202") == batches
        assert value(server, requests, route="/v1/events/{event_type}", status="404") == 1
        assert value(
            server, "logstream_http_request_duration_seconds_count", route="/v1/events/likes"
        ) == singles + invalid_singles
        assert value(server, "logstream_ingest_broker_ack_seconds_count") == singles + batches
        routes = {dict(labels).get("route", "") for (_n, labels) in server}
        assert not any("example.com" in r or "shares" in r for r in routes), routes

    # Each consumer applied exactly what was sent; nothing is behind.
    for view in VIEWS:
        wait_for(
            f"{view} applied {sent}",
            lambda v=view: value(stack.consumer(v), "logstream_consumer_events_applied_total")
            == sent,
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

    # Stop one consumer: its lag grows by exactly what arrives, and its lag in seconds is
    # the age of the oldest record it has not applied (event time = occurred_at).
    victim = "likes-by-url"
    stack.stop(victim)
    now = int(time.time() * 1000)
    oldest_ms = now - 120_000
    late = 10
    for i in range(late):
        body = like(5000 + i, occurred_at=oldest_ms + i * 1000)
        assert post(stack.base, "/v1/events/likes", body).status_code == 202
    wait_for("lag offsets = late", lambda: lag_offsets(stack.server(), victim) == late)
    before = time.time()
    server = stack.server()
    after = time.time()
    seconds = value(server, "logstream_view_lag_seconds", view=victim)
    assert before - oldest_ms / 1000 - 0.01 <= seconds <= after - oldest_ms / 1000 + 0.01
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


def lag_offsets(samples: Samples, view: str) -> float:
    """The view's lag in offsets, or -1 while no partition is reported yet."""
    rows = [v for (n, ls), v in samples.items()
            if n == "logstream_view_lag_offsets" and ("view", view) in ls]
    return sum(rows) if rows else -1
