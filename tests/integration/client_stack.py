"""A real stack for client tests: `logstream ingest` as its own process, a live view consumer,
an httpx transport that records every exchange (when it was sent and answered, how), and a
reader of the whole log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from confluent_kafka import Consumer, TopicPartition

from consumers import VIEWS
from logstream.codec import Codec
from logstream.runtime import ViewRunner
from logstream.schemas import SchemaCatalogue
from logstream.settings import Settings
from logstream.stores.factory import open_view_store

REPO = Path(__file__).resolve().parents[2]


def stack_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a subprocess the same deployment as `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")}
    env.update(
        LOGSTREAM_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
        LOGSTREAM_DATA_DIR=str(settings.data_dir),
        LOGSTREAM_TOPIC_PREFIX=settings.topic_prefix,
        LOGSTREAM_INGEST_ACK_TIMEOUT_S=str(settings.ingest_ack_timeout_s),
        LOGSTREAM_KAFKA_EXTRA=json.dumps(settings.kafka_extra),
    )
    return env


class IngestProcess:
    """`python -m logstream ingest` on a fixed port; it can be killed and started again."""

    def __init__(self, settings: Settings, port: int, log: Path) -> None:
        self.env = stack_env(settings)
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "logstream", "ingest", "--port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "ingest did not answer /healthz"
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: in-flight requests get no answer, new ones are refused."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


class LiveView:
    """A view consumer in a thread, writing the store that ingest's read router answers from."""

    def __init__(self, settings: Settings, name: str = "likes-by-url") -> None:
        view = VIEWS[name]
        self.store = open_view_store(None, settings.data_dir, view)
        codec = Codec(SchemaCatalogue.load(settings.resolved_schema_dir))
        self.runner = ViewRunner(settings, view, self.store, codec, on_stall=self._stalled)
        self.stalled: list[str] = []
        self.thread = threading.Thread(target=self.runner.run, name=f"view-{name}", daemon=True)

    def _stalled(self, reason: str) -> None:
        self.stalled.append(reason)

    def __enter__(self) -> LiveView:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.runner.stop()
        self.thread.join(timeout=30)
        self.store.close()
        assert not self.thread.is_alive(), "the view consumer did not stop"


@dataclass(frozen=True)
class Exchange:
    """One request as the client made it: when it left, when it ended, and how."""

    path: str
    sent: float
    ended: float
    status: int | None  # None: no answer (connection refused, reset, timeout)
    retry_after: str | None


class RecordingTransport(httpx.BaseTransport):
    """The real HTTP transport, plus a log of every exchange (thread-safe)."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self._lock = threading.Lock()
        self.exchanges: list[Exchange] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        sent = time.monotonic()
        try:
            response = self._inner.handle_request(request)
            response.read()
        except httpx.TransportError:
            self._record(Exchange(request.url.path, sent, time.monotonic(), None, None))
            raise
        retry_after = response.headers.get("Retry-After")
        exchange = Exchange(
            request.url.path, sent, time.monotonic(), response.status_code, retry_after
        )
        self._record(exchange)
        return response

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    def statuses(self) -> list[int | None]:
        with self._lock:
            return [e.status for e in self.exchanges]

    def close(self) -> None:
        self._inner.close()


@dataclass(frozen=True)
class LoggedLike:
    partition: int
    offset: int
    key: bytes | None
    event_id: str
    url: str


def read_log(bootstrap: str, topic: str, codec: Codec, timeout_s: float = 60) -> list[LoggedLike]:
    """Every like in `topic` up to the end offsets seen at start, decoded with the codec."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"r-{uuid.uuid4()}", "enable.auto.commit": 0}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        seen: dict[int, int] = dict.fromkeys(ends, 0)
        likes: list[LoggedLike] = []
        deadline = time.monotonic() + timeout_s
        while any(seen[p] < end for p, end in ends.items()):
            assert time.monotonic() < deadline, f"read {seen} of {ends}"
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                assert msg.error() is None, msg.error()
                if msg.offset() >= ends[msg.partition()]:
                    continue
                _writer, like = codec.decode(msg.value())
                likes.append(
                    LoggedLike(
                        msg.partition(), msg.offset(), msg.key(), like["event_id"], like["url"]
                    )
                )
                seen[msg.partition()] += 1
        return likes
    finally:
        consumer.close()
