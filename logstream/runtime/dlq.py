"""Dead letters: messages a view cannot decode or apply go to `<topic>.dlq`, with headers
naming the error, the view and the origin, so processing continues and nothing is lost.

The runtime holds a dead letter with the batch it was found in (`hold`) and produces it
only when that batch is handed to the commit step (`release`): a batch that is dropped
instead (a stop on a view-code error, lost partitions, a fenced flush) drops its dead
letters too (`discard`), since its messages are read, and dead-lettered, again after the
restart. So the `.dlq` topic holds one copy of each. (A flush given up *after* its dead
letters were acknowledged, e.g. a stop while the store is down, still re-produces them
after the restart: the origin headers identify such a copy.)"""

from __future__ import annotations

import threading

from confluent_kafka import Message, Producer

from logstream.errors import LogstreamError
from logstream.kafka.config import dead_letter_producer_config
from logstream.kafka.timestamps import NO_TIMESTAMP, record_timestamp
from logstream.settings import Settings
from logstream.topics import dlq_topic

__all__ = ["DeadLetters", "DeadLettersUnconfirmed"]


class DeadLettersUnconfirmed(LogstreamError):
    """Dead letters are still queued unacknowledged (the broker did not answer in time).

    Transient: they stay in the producer's queue, so flushing again later is enough.
    """


class DeadLetters:
    """A lazily created, durable (acks=all) producer for dead letters."""

    def __init__(self, settings: Settings, view_name: str) -> None:
        self._settings = settings
        self._view = view_name
        self._producer: Producer | None = None
        self._held: list[tuple[Message, str, str]] = []  # (message, error, its class)
        self._failures: list[str] = []
        # Delivery reports arrive on the consume thread (poll), flush runs on the commit one.
        self._failures_lock = threading.Lock()

    def send(self, msg: Message, error: Exception) -> None:
        """Produce a dead letter now (`flush` waits for it)."""
        self._produce(msg, f"{type(error).__name__}: {error}", type(error).__name__)

    def hold(self, msg: Message, error: Exception) -> None:
        """Hold a dead letter with the current batch (produced by `release`)."""
        self._held.append((msg, f"{type(error).__name__}: {error}", type(error).__name__))

    def discard(self) -> int:
        """Forget the held dead letters: their batch is dropped and will be read again."""
        count = len(self._held)
        self._held = []
        return count

    def release(self) -> int:
        """Produce the held dead letters: their batch is being handed to the commit step,
        whose `flush` waits for them before the store's offsets move. Returns how many."""
        held, self._held = self._held, []
        for msg, error, error_class in held:
            self._produce(msg, error, error_class)
        return len(held)

    def _produce(self, msg: Message, error: str, error_class: str) -> None:
        if self._producer is None:
            self._producer = Producer(dead_letter_producer_config(self._settings))
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        headers: list[tuple[str, str | bytes | None]] = [
            ("logstream.error", error[:1000].encode()),
            ("logstream.error.class", error_class.encode()),
            ("logstream.view", self._view.encode()),
            ("logstream.origin.topic", str(topic).encode()),
            ("logstream.origin.partition", str(partition).encode()),
            ("logstream.origin.offset", str(offset).encode()),
            ("logstream.origin.timestamp", str(msg.timestamp()[1]).encode()),
        ]
        self._producer.produce(
            dlq_topic(str(topic)),
            value=msg.value(),
            key=msg.key(),
            headers=headers,
            # The origin's timestamp, exactly: 0 or none stays "no timestamp", never "now".
            timestamp=record_timestamp(max(msg.timestamp()[1], NO_TIMESTAMP)),
            on_delivery=self._on_delivery,
        )
        self._producer.poll(0)

    def _on_delivery(self, err: object, _msg: object) -> None:
        if err is not None:
            with self._failures_lock:
                self._failures.append(str(err))

    def flush(self, timeout_s: float = 30.0) -> None:
        """Block until every dead letter is acknowledged; offsets may only move after that.

        A delivery that failed for good raises LogstreamError (the consumer stops, and the
        message is read and dead-lettered again after a restart); one still unacknowledged
        after `timeout_s` raises DeadLettersUnconfirmed, which a later flush can settle."""
        if self._producer is None:
            return
        remaining = self._producer.flush(timeout_s)
        with self._failures_lock:
            failures, self._failures = self._failures, []
        if failures:
            raise LogstreamError(
                f"could not write {len(failures)} dead letter(s): "
                f"{failures[:1]}; is the .dlq topic created (logstream topics create)?"
            )
        if remaining:
            raise DeadLettersUnconfirmed(
                f"{remaining} dead letter(s) not acknowledged within {timeout_s:g} s"
            )
