"""Dead letters: messages a view cannot decode or apply go to `<topic>.dlq`, with headers
naming the error, the view and the origin, so processing continues and nothing is lost."""

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
        self._failures: list[str] = []
        # Delivery reports arrive on the consume thread (poll), flush runs on the commit one.
        self._failures_lock = threading.Lock()

    def send(self, msg: Message, error: Exception) -> None:
        if self._producer is None:
            self._producer = Producer(dead_letter_producer_config(self._settings))
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        headers: list[tuple[str, str | bytes | None]] = [
            ("logstream.error", f"{type(error).__name__}: {error}"[:1000].encode()),
            ("logstream.error.class", type(error).__name__.encode()),
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
