"""`EventProducer`: an asyncio face on a durable confluent-kafka producer.

Why it exists: a 2xx from ingest promises that the broker has the event
(docs/architecture.md, invariant 1). `send` and `send_many` therefore resolve only on the
broker's delivery report (`acks=all`, idempotent producer) and give up after a bound
(`ingest_ack_timeout_s`) with `BrokerUnavailableError`, which the API turns into a 503.

How it works:
- The librdkafka client is created by `start()` (awaited in the app's lifespan, so once per
  worker process and never before a fork), never at import or in `__init__`.
- Delivery reports are served by a task on the event loop that started the producer: it
  calls `poll(0)` every millisecond while messages are outstanding and sleeps until the next
  send otherwise. A separate polling thread was measured first; its GIL hand-offs with the
  loop thread cost more CPU per request than validation and encoding together, and halved
  the request rate (re-measured later: still no better). Reports for that loop's futures
  settle them inside `poll()`; futures of other event loops (test clients) are settled
  through `call_soon_threadsafe`, once per poll round. The same task fails single sends
  still unanswered at the bound (one deque of deadlines instead of a timer per request).
- `message.timeout.ms` and `request.timeout.ms` equal the bound, so a message that was not
  acknowledged when the caller got its 503 is expired by librdkafka about then instead of
  being retried into the log minutes later. One window remains: a request already on the
  wire whose write succeeded but whose acknowledgement was lost or came late. Such an event
  can be in the log although the client was told 503; a client that retries with the same
  `event_id` gets at-least-once delivery, never a lost acknowledged event.
- A fatal librdkafka error (rare with a non-transactional idempotent producer) retires the
  client; the next send builds a fresh one, so ingest recovers without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from logstream.errors import LogstreamError
from logstream.kafka.config import producer_config
from logstream.kafka.timestamps import record_timestamp
from logstream.settings import Settings

__all__ = [
    "BrokerUnavailableError",
    "Delivery",
    "EventProducer",
    "OutgoingMessage",
    "SendOutcome",
]

log = logging.getLogger(__name__)

_POLL_INTERVAL_S = 0.001
_IDLE_POLL_S = 0.5
_QUEUE_FULL_RETRY_S = 0.005


class BrokerUnavailableError(LogstreamError):
    """The broker did not acknowledge in time, the local queue is full, or delivery failed.

    `retry_after_s` is a hint for the HTTP `Retry-After` header; `cause` is one word for
    metrics: queue_full, ack_timeout, delivery_failed or refused.
    """

    def __init__(self, message: str, *, retry_after_s: int = 1, cause: str = "refused") -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.cause = cause


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where the broker put an acknowledged message."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One event to write: key = the event's key field, UTF-8 (None: no key), timestamp =
    its event time (epoch ms)."""

    topic: str
    key: bytes | None
    value: bytes
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """Per-message result of `send_many`: exactly one of `delivery` and `error` is set."""

    delivery: Delivery | None
    error: str | None
    cause: str | None = None  # with `error`: BrokerUnavailableError's cause vocabulary

    @property
    def ok(self) -> bool:
        return self.delivery is not None


_Settled = tuple["asyncio.Future[Any]", Any]


class _BatchWaiter:
    """Collects the delivery reports of one `send_many` call.

    Only the polling thread counts deliveries; the event loop only sets `target` once it
    knows how many messages were enqueued. Whichever side sees `delivered == target` last
    queues the wake-up (a second one is harmless), so no lock is needed.
    """

    __slots__ = ("delivered", "future", "outcomes", "sink", "target")

    def __init__(self, future: asyncio.Future[Any], size: int, sink: list[_Settled]) -> None:
        self.future = future
        self.outcomes: list[SendOutcome | None] = [None] * size
        self.delivered = 0
        self.target: int | None = None
        self.sink = sink

    def set_target(self, enqueued: int) -> bool:
        """Record how many reports to wait for; True when all of them already arrived."""
        self.target = enqueued
        return self.delivered >= enqueued

    def on_delivery(self, index: int, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            outcome = SendOutcome(Delivery(msg.topic(), msg.partition(), msg.offset()), None)
        else:
            outcome = SendOutcome(None, _delivery_error_text(err), _delivery_cause(err))
        self.outcomes[index] = outcome
        self.delivered += 1
        if self.delivered == self.target:
            self.sink.append((self.future, None))


def _delivery_cause(err: KafkaError) -> str:
    return "ack_timeout" if err.code() == KafkaError._MSG_TIMED_OUT else "delivery_failed"


def _delivery_error_text(err: KafkaError) -> str:
    if err.code() == KafkaError._MSG_TIMED_OUT:
        return "the broker did not acknowledge the write in time"
    return f"the broker refused or lost the write: {err.str()}"


class EventProducer:
    """A durable producer for coroutines; `start()` it in a lifespan, `close()` it on shutdown."""

    def __init__(self, settings: Settings, **overrides: Any) -> None:
        self.ack_timeout_s = settings.ingest_ack_timeout_s
        bound_ms = max(1, math.ceil(self.ack_timeout_s * 1000))
        self._config = producer_config(
            settings,
            **{
                "message.timeout.ms": bound_ms,
                "request.timeout.ms": min(bound_ms, 30_000),
                # Short linger: an HTTP client waits for this ack. Batches still form under
                # load (and a /batch call enqueues 1,000 at once). Must stay below the timeout.
                "linger.ms": min(2, max(0, bound_ms - 1)),
                "error_cb": self._on_error,
                "logger": logging.getLogger("logstream.producer.librdkafka"),
                **overrides,
            },
        )
        self._producer: Producer | None = None
        self._retired: list[Producer] = []
        self._fatal: KafkaError | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poller: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._settled: list[_Settled] = []  # filled by callbacks inside poll()/flush()
        # Single sends of the polling loop, oldest first (one bound, so deadlines ascend):
        # the poll task expires them, which is cheaper than one timer per request.
        self._deadlines: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._serving: asyncio.AbstractEventLoop | None = None  # set while poll() runs on it
        # Metrics hook: seconds from a send to the broker's acknowledgement, once per call
        # whose every message was acknowledged (a failed call is counted by its cause).
        # Always called on the producer's own loop (`_report_ack`), so it needs no lock.
        self.on_ack: Callable[[float], None] | None = None

    # ----- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Create the client and the task that serves its delivery reports (idempotent)."""
        if self._producer is None:
            self._producer = self._new_client()
        if self._poller is None:
            self._loop = asyncio.get_running_loop()
            self._wakeup = asyncio.Event()
            self._poller = self._loop.create_task(self._poll_forever(), name="producer-poll")

    def _new_client(self) -> Producer:
        try:
            return Producer(self._config)
        except KafkaException as exc:
            raise LogstreamError(f"invalid producer configuration: {exc.args[0]}") from exc

    async def close(self, timeout_s: float = 30.0) -> int:
        """Stop polling and flush; returns how many messages were still undelivered."""
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        producer, self._producer = self._producer, None
        left = 0
        if producer is not None:
            left = await asyncio.to_thread(producer.flush, timeout_s)
        for old in self._retired:
            await asyncio.to_thread(old.flush, 0)
        self._retired.clear()
        self._dispatch()
        return left

    def flush(self, timeout_s: float) -> int:
        """Wait (blocking: call it from another thread than the loop's) for every report."""
        deadline = time.monotonic() + timeout_s
        producer = self._client()
        while len(producer) and time.monotonic() < deadline:
            time.sleep(0.01)
        return len(producer)

    def list_topics(self, timeout_s: float) -> Any:
        """Cluster metadata through this producer's connections (a readiness probe; blocks)."""
        return self._client().list_topics(timeout=timeout_s)

    @property
    def started(self) -> bool:
        return self._producer is not None

    @property
    def queue_depth(self) -> int:
        """Messages produced and not yet acknowledged (librdkafka's local queue)."""
        producer = self._producer
        return len(producer) if producer is not None else 0

    # ----- sending -------------------------------------------------------------------------
    async def send(
        self, topic: str, key: bytes | None, value: bytes, timestamp_ms: int
    ) -> Delivery:
        """Write one message; returns once the broker acknowledged it, within the bound."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.ack_timeout_s
        future: asyncio.Future[Any] = loop.create_future()
        callback = partial(self._on_single_delivery, future)
        if not self._produce(topic, key, value, timestamp_ms, callback):  # queue full: wait
            await self._enqueue(topic, key, value, timestamp_ms, callback, deadline)
        if loop is self._loop:
            self._deadlines.append((deadline, future))
            result = await future
        else:
            timer = loop.call_at(deadline, _expire, future, self.ack_timeout_s)
            try:
                result = await future
            finally:
                timer.cancel()
        if self.on_ack is not None:
            self._report_ack(loop, loop.time() - started)
        return result

    async def send_many(self, messages: Sequence[OutgoingMessage]) -> list[SendOutcome]:
        """Write messages in order; one outcome per message, all known within the bound.

        Enqueueing stops at the first message that finds the local queue still full at the
        deadline; it and the ones after it are reported as not written.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ack_timeout_s
        waiter = _BatchWaiter(loop.create_future(), len(messages), self._settled)
        enqueued = 0
        failure: BrokerUnavailableError | None = None
        for i, m in enumerate(messages):
            callback = partial(waiter.on_delivery, i)
            try:
                if not self._produce(m.topic, m.key, m.value, m.timestamp_ms, callback):
                    await self._enqueue(m.topic, m.key, m.value, m.timestamp_ms, callback, deadline)
            except BrokerUnavailableError as exc:
                failure = exc
                break
            enqueued += 1
        if not waiter.set_target(enqueued):
            timer = loop.call_at(deadline, _expire, waiter.future, self.ack_timeout_s)
            try:
                await waiter.future
            except BrokerUnavailableError:
                pass
            finally:
                timer.cancel()
        not_sent = f"not sent: {failure}" if failure else "not sent"
        not_sent_cause = failure.cause if failure else "refused"
        timed_out = "the broker did not acknowledge the write in time"
        outcomes = [
            outcome
            if outcome is not None
            else (
                SendOutcome(None, timed_out, "ack_timeout")
                if i < enqueued
                else SendOutcome(None, not_sent, not_sent_cause)
            )
            for i, outcome in enumerate(list(waiter.outcomes))
        ]
        if self.on_ack is not None and all(o.ok for o in outcomes):  # as send(): acks only
            self._report_ack(loop, loop.time() - (deadline - self.ack_timeout_s))
        return outcomes

    def _report_ack(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        """`on_ack(seconds)` on the producer's own loop: a send awaited on another thread's
        loop hands it over rather than call it from that thread."""
        on_ack, own = self.on_ack, self._loop
        if on_ack is None:
            return
        if loop is own or own is None:
            on_ack(seconds)
        else:
            with contextlib.suppress(RuntimeError):  # the producer's loop is closed
                own.call_soon_threadsafe(on_ack, seconds)

    async def _enqueue(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        timestamp_ms: int,
        callback: Any,
        deadline: float,
    ) -> None:
        """produce(), waiting (without blocking the loop) while the local queue is full."""
        loop = asyncio.get_running_loop()
        while not self._produce(topic, key, value, timestamp_ms, callback):
            if loop.time() + _QUEUE_FULL_RETRY_S >= deadline:
                raise BrokerUnavailableError(
                    "the producer queue is full (the broker is slow or unreachable)",
                    retry_after_s=1,
                    cause="queue_full",
                )
            await asyncio.sleep(_QUEUE_FULL_RETRY_S)

    def _produce(
        self, topic: str, key: bytes | None, value: bytes, timestamp_ms: int, callback: Any
    ) -> bool:
        """One produce() call; False when the local queue is full (try again later)."""
        try:
            self._client().produce(
                topic,
                value=value,
                key=key,
                timestamp=record_timestamp(timestamp_ms),  # event time 0: see kafka.timestamps
                on_delivery=callback,
            )
        except BufferError:
            return False
        except KafkaException as exc:
            raise BrokerUnavailableError(
                f"the producer refused the write: {exc.args[0]}",
                retry_after_s=self._retry_after(),
            ) from exc
        self._wake()
        return True

    def _client(self) -> Producer:
        """The live client; replaces it after a fatal error so ingest heals by itself."""
        producer = self._producer
        if producer is None:
            raise LogstreamError("EventProducer used before start() or after close()")
        if self._fatal is None:
            return producer
        with self._lock:
            if self._fatal is not None and self._producer is producer:
                log.warning("replacing the producer after a fatal error: %s", self._fatal)
                self._retired.append(producer)
                producer = self._producer = self._new_client()
                self._fatal = None
            return self._producer or producer

    def _retry_after(self) -> int:
        return max(1, math.ceil(self.ack_timeout_s))

    # ----- delivery reports ----------------------------------------------------------------
    def _wake(self) -> None:
        """Tell the poll task that a message is outstanding (from any thread)."""
        wakeup, loop = self._wakeup, self._loop
        if wakeup is None or loop is None or wakeup.is_set():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            wakeup.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(wakeup.set)

    async def _poll_forever(self) -> None:
        wakeup, loop = self._wakeup, asyncio.get_running_loop()
        assert wakeup is not None
        while True:
            producer = self._producer
            if producer is None:
                return
            self._serving = loop
            try:
                producer.poll(0)
                for old in list(self._retired):
                    old.poll(0)
                    if len(old) == 0:
                        self._retired.remove(old)
            except Exception:  # a callback bug must not stop delivery for everyone
                log.exception("producer poll failed")
            finally:
                self._serving = None
            self._dispatch()
            self._expire_overdue(loop.time())
            if len(producer) or self._retired:
                await asyncio.sleep(_POLL_INTERVAL_S)
            else:
                wakeup.clear()
                # Wake on the next send; poll now and then anyway for error and log callbacks.
                idle_s = _IDLE_POLL_S
                if self._deadlines:
                    idle_s = min(idle_s, max(0.0, self._deadlines[0][0] - loop.time()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), idle_s)

    def _expire_overdue(self, now: float) -> None:
        """Fail the single sends still unanswered at their deadline; forget answered ones."""
        deadlines = self._deadlines
        while deadlines:
            deadline, future = deadlines[0]
            if not future.done():
                if deadline > now:
                    return
                _expire(future, self.ack_timeout_s)
            deadlines.popleft()

    def _dispatch(self) -> None:
        """Settle the outcomes gathered since the last round, each in its future's loop."""
        with self._lock:
            if not self._settled:
                return
            settled, self._settled[:] = list(self._settled), []
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        by_loop: dict[asyncio.AbstractEventLoop, list[_Settled]] = {}
        for future, outcome in settled:
            by_loop.setdefault(future.get_loop(), []).append((future, outcome))
        for loop, items in by_loop.items():
            if loop is running:
                _settle(items)
            else:
                # A closed loop raises RuntimeError: nobody waits for those futures any more.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle, items)

    def _on_single_delivery(
        self, future: asyncio.Future[Any], err: KafkaError | None, msg: Any
    ) -> None:
        if err is None:
            outcome: Any = Delivery(msg.topic(), msg.partition(), msg.offset())
        else:
            outcome = BrokerUnavailableError(
                _delivery_error_text(err),
                retry_after_s=self._retry_after(),
                cause=_delivery_cause(err),
            )
        if self._serving is not None and future.get_loop() is self._serving:
            _settle(((future, outcome),))  # inside the poll task: settle right away
        else:
            self._settled.append((future, outcome))

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            log.error("fatal producer error: %s", err)
            self._fatal = err
        else:
            log.debug("producer error (librdkafka retries by itself): %s", err)


def _settle(items: Sequence[_Settled]) -> None:
    """Runs in the event loop: resolve each future that nobody gave up on yet."""
    for future, outcome in items:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _expire(future: asyncio.Future[Any], bound_s: float) -> None:
    if not future.done():
        future.set_exception(
            BrokerUnavailableError(
                f"the broker did not acknowledge within {bound_s:g}s",
                retry_after_s=max(1, math.ceil(bound_s)),
                cause="ack_timeout",
            )
        )
