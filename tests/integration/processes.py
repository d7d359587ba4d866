"""Child processes of a running logstream (ingest, consumers) and Prometheus scrapes, for the
metrics and dashboard tests."""

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


def run_stack(
    kafka_bootstrap: str, admin: Any, unique_name: Any, tmp_path: Path, workers: int = 2
) -> Iterator[Stack]:
    """Ingest (`workers` processes) and one consumer per view on a fresh topic prefix."""
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
    running.start("ingest", ["ingest", "--port", str(ingest_port), "--workers", str(workers)])
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


def lag_offsets(samples: Samples, view: str) -> float:
    """The view's lag in offsets, or -1 while no partition is reported yet."""
    rows = [
        v
        for (n, ls), v in samples.items()
        if n == "logstream_view_lag_offsets" and ("view", view) in ls
    ]
    return sum(rows) if rows else -1
