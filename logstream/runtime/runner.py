"""The one consume loop every view runs on.

Commit step, in order (see STYLE.md, quixstreams' Checkpoint.commit):
  1. flush dead letters (acks=all) so nothing skipped is lost;
  2. in ONE store transaction, add the batch's aggregated counter deltas and record each
     partition's next offset, fenced on the offset the batch started from;
  3. commit the same offsets to Kafka, for lag tools only: the store is authoritative and a
     failure here is logged, not fatal.
On assignment the runtime seeks to the offsets stored in the view store (earliest when none),
so a crash at any instant, a restart or a rebalance never loses or doubles a count.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from logstream.codec import Codec
from logstream.errors import LogstreamError, StaleOffsetError
from logstream.kafka.admin import topic_watermarks
from logstream.kafka.config import consumer_config
from logstream.runtime.committer import Committer
from logstream.runtime.dedupe import EventIdWindow
from logstream.runtime.dlq import DeadLetters
from logstream.runtime.pending import PendingBatch
from logstream.settings import Settings
from logstream.stores.base import Counter, Position, ViewStore
from logstream.topics import resolve_topics
from logstream.view import View

__all__ = ["RunResult", "ViewRunner"]

log = logging.getLogger("logstream.runtime")

TP = tuple[str, int]
CATCH_UP_FLUSH_FACTOR = 5


@dataclass
class RunResult:
    events_applied: int = 0
    events_skipped: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    flushes: int = 0
    fenced: int = 0
    caught_up: bool = False
    targets: dict[TP, int] = field(default_factory=dict)


class ViewRunner:
    """Consume a view's topics as consumer group `group_id` and keep its store exact."""

    def __init__(
        self,
        settings: Settings,
        view: View,
        store: ViewStore,
        codec: Codec,
        *,
        group_id: str | None = None,
        until_caught_up: bool = False,
        on_progress: Callable[[int], None] | None = None,
        consumer_overrides: dict[str, object] | None = None,
        topics: tuple[str, ...] | None = None,
    ) -> None:
        self.settings = settings
        self.view = view
        self.store = store
        self.codec = codec
        self.group_id = group_id or view.name
        self.topics = topics or resolve_topics(settings, view.topics)
        self.until_caught_up = until_caught_up
        self.on_progress = on_progress
        self._overrides = consumer_overrides or {}
        self._stopping = False
        self._pending = PendingBatch()
        self._guards: dict[TP, Position] = {}
        self._assigned: set[TP] = set()
        self._assignment_seen = False
        self._dead_letters = DeadLetters(settings, view.name)
        self._last_flush = time.monotonic()
        self._last_store_check = 0.0
        self._log_starts: dict[TP, int] = {}
        horizon = settings.dedupe_horizon_events
        self._event_ids = EventIdWindow(horizon) if horizon and view.event_id_field else None
        self.result = RunResult()
        self._consumer: Consumer | None = None
        self._committer: Committer | None = None

    def stop(self) -> None:
        """Ask the loop to finish its batch, flush and close (safe from a signal handler)."""
        self._stopping = True

    # ----- rebalance callbacks -------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._settle(consumer)
        stored = self.store.positions()
        self._guards.clear()
        tracked: dict[TP, Position | None] = {}
        for tp in partitions:
            key = (tp.topic, tp.partition)
            position = stored.get(key)
            tp.offset = self._start_offset(key, position)
            tracked[key] = position
            if position is not None and position.guard_offset is not None:
                self._guards[key] = position
        self._pending.track(tracked)
        self._assigned = set(tracked)
        self._assignment_seen = True
        consumer.assign(partitions)
        log.info("%s: assigned %s", self.group_id, sorted(tracked))

    def _start_offset(self, tp: TP, position: Position | None) -> int:
        """Where to seek `tp`: its stored offset, or earlier when event ids must be re-read."""
        window = self._event_ids
        if position is None:
            if window is not None:
                window.start_empty(tp)
            return OFFSET_BEGINNING
        if window is None:
            return position.next_offset
        since = position.next_offset - window.horizon
        stored = self.store.event_id_ranges(tp[0], tp[1], since)
        return window.start(tp, position.next_offset, stored)

    def _forget(self, tps: list[TP]) -> None:
        self._pending.forget(tps)
        if self._event_ids is not None:
            self._event_ids.forget(tps)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._flush(consumer)
        self._forget([(tp.topic, tp.partition) for tp in partitions])
        self._assigned.clear()
        self._assignment_seen = False  # caught up means nothing until the next assignment
        consumer.unassign()

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._settle(consumer)
        log.warning("%s: partitions lost; dropping the unflushed batch", self.group_id)
        self._pending.clear()
        self._forget([(tp.topic, tp.partition) for tp in partitions])
        self._assigned.clear()
        self._assignment_seen = False
        consumer.unassign()

    # ----- the loop ------------------------------------------------------------------------
    def run(self) -> RunResult:
        conf = consumer_config(self.settings, self.group_id, **self._overrides)
        consumer = Consumer(conf)
        self._consumer = consumer
        self._committer = Committer(
            self.store,
            self._dead_letters,
            lambda offsets: _commit_sync(consumer, offsets),
            self.group_id,
        )
        try:
            if self.until_caught_up:
                self.result.targets = self._end_offsets(consumer)
            consumer.subscribe(
                list(self.topics),
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            self._loop(consumer)
            self._flush(consumer)
        finally:
            try:
                self._committer.close()
            finally:
                self._committer = None
                consumer.close()
                self._consumer = None
        return self.result

    def _end_offsets(self, consumer: Consumer) -> dict[TP, int]:
        """Each partition's end offset at start: `--until-caught-up` stops there."""
        marks = topic_watermarks(consumer, self.topics)
        self._log_starts = {tp: low for tp, (low, _high) in marks.items()}
        return {tp: high for tp, (_low, high) in marks.items()}

    def _loop(self, consumer: Consumer) -> None:
        batch_size = self.settings.consume_batch_size
        max_keys = self.settings.flush_max_keys
        interval = self.settings.flush_interval_s
        while not self._stopping:
            messages = consumer.consume(num_messages=batch_size, timeout=0.5)
            if messages:
                self._apply(messages)
            # Far behind the log (a full batch came back), freshness is moot and bigger
            # flushes are cheaper per event: flush on time only every few intervals.
            catching_up = len(messages) == batch_size
            due = interval * (CATCH_UP_FLUSH_FACTOR if catching_up else 1)
            pending = self._pending
            if pending.dirty and (
                len(pending.counters) >= max_keys or time.monotonic() - self._last_flush >= due
            ):
                self._flush(consumer, wait=False)
            if self.until_caught_up and self._caught_up():
                self._flush(consumer)  # waits: caught up means committed
                if (
                    self._caught_up()
                    and not self._pending.dirty
                    and self._others_caught_up(consumer)
                ):
                    self.result.caught_up = True
                    return

    def _apply(self, messages: list[Message]) -> None:
        pending = self._pending
        counters = pending.counters
        next_offsets = pending.next_offsets
        decode = self.codec.decode
        keys_of = self.view.keys
        guards = self._guards
        window = self._event_ids
        id_field = self.view.event_id_field or ""  # only read when the window exists
        warming = window.warm_until if window is not None else None
        max_ms = pending.max_event_ms if pending.max_event_ms is not None else -(2**63)
        applied = skipped = duplicates = 0
        for msg in messages:
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise LogstreamError(f"consume failed: {error.str()}")
            # A consumed message always has a topic, partition and offset (the stubs say
            # Optional because produced messages may not).
            tp: TP = (msg.topic(), msg.partition())  # type: ignore[assignment]
            offset: int = msg.offset()  # type: ignore[assignment]
            ts = msg.timestamp()[1]
            if warming and window is not None and window.warmed(tp, offset):
                self._record_id(window, tp, offset, msg)  # below the start: ids only
                continue
            if guards:
                guard = guards.get(tp)
                if guard is not None and guard.skips(offset, ts):
                    if window is not None:
                        self._record_id(window, tp, offset, msg)
                    next_offsets[tp] = offset + 1
                    skipped += 1
                    continue
            try:
                _writer, record = decode(msg.value())
                if window is not None:
                    event_id = record.get(id_field)
                    if event_id is not None and window.repeat(tp, offset, event_id):
                        next_offsets[tp] = offset + 1
                        duplicates += 1
                        continue
                keys = keys_of(record, ts)
            except Exception as exc:  # undecodable or unappliable: a dead letter, not a stop
                self._dead_letters.send(msg, exc)
                pending.dead_letters += 1
                self.result.dead_letters += 1
                next_offsets[tp] = offset + 1
                continue
            for key in keys:
                counter = counters.get(key)
                if counter is None:
                    counters[key] = Counter(1, ts, ts)
                else:
                    counter.count += 1
                    if ts < counter.first_ms:
                        counter.first_ms = ts
                    elif ts > counter.last_ms:
                        counter.last_ms = ts
            if ts > max_ms:
                max_ms = ts
            next_offsets[tp] = offset + 1
            applied += 1
        if applied:
            pending.max_event_ms = max_ms
        pending.events += applied
        self.result.events_applied += applied
        self.result.events_skipped += skipped
        self.result.duplicates += duplicates
        if self.on_progress is not None:
            self.on_progress(len(messages))

    def _record_id(self, window: EventIdWindow, tp: TP, offset: int, msg: Message) -> None:
        """Note the event id of a message that is not applied (already counted, or below
        the partition's start) so that later copies of it are still recognised."""
        try:
            _writer, record = self.codec.decode(msg.value())
        except Exception:  # undecodable: it has no id (it was, or will be, a dead letter)
            return
        event_id = record.get(self.view.event_id_field or "")
        if event_id is not None:
            window.repeat(tp, offset, event_id)

    def _flush(self, consumer: Consumer, *, wait: bool = True) -> None:
        """Hand the batch to the committer; with `wait`, return only once it is committed."""
        self._last_flush = time.monotonic()
        if not self._settle(consumer):
            return
        pending = self._pending
        if self._committer is None:
            return  # shut down after a failure: what was not committed is read again later
        if pending.dirty:
            flush = pending.to_flush()
            if self._event_ids is not None:
                ranges, expire = self._event_ids.close_ranges(pending.next_offsets)
                flush = dataclasses.replace(flush, event_ids=ranges, event_ids_expire=expire)
            pending.committed()  # the next batch is fenced on these offsets
            self._committer.submit(flush)
            self.result.flushes += 1
        if wait:
            self._settle(consumer)

    def _settle(self, consumer: Consumer) -> bool:
        """Wait for the in-flight flush; if it was fenced, drop what was read since and
        rewind to the stored offsets. False when that happened."""
        if self._committer is None:
            return True
        try:
            self._committer.wait()
        except StaleOffsetError as exc:
            self.result.fenced += 1
            log.warning("%s: flush fenced (%s); rewinding to stored offsets", self.group_id, exc)
            self._pending.clear()
            self._rewind(consumer)
            return False
        return True

    def _rewind(self, consumer: Consumer) -> None:
        """After a fenced flush, seek every assigned partition back to its stored position."""
        stored = self.store.positions()
        tracked: dict[TP, Position | None] = {}
        for tp in self._assigned:
            position = stored.get(tp)
            tracked[tp] = position
            offset = self._start_offset(tp, position)
            try:
                consumer.seek(TopicPartition(tp[0], tp[1], offset))
            except KafkaException as exc:
                log.warning("%s: seek %s failed: %s", self.group_id, tp, exc)
        self._pending.track(tracked)
        self._guards = {tp: p for tp, p in tracked.items() if p and p.guard_offset is not None}

    def _caught_up(self) -> bool:
        """Every assigned partition has been read up to its target (flushed or not)."""
        if not self._assignment_seen:
            return False
        targets = self.result.targets
        pending = self._pending
        return all(
            self._reached(tp, pending.next_offsets.get(tp, pending.started_at.get(tp)))
            for tp in self._assigned
            if tp in targets
        )

    def _reached(self, tp: TP, position: int | None) -> bool:
        """`position` (None: nothing stored, i.e. the log start) is at `tp`'s target."""
        if position is None:
            position = self._log_starts.get(tp, 0)
        return position >= self.result.targets[tp]

    def _others_caught_up(self, consumer: Consumer) -> bool:
        """Partitions this member does not own are caught up too, per the (shared) store.

        Another member may own them, or a crashed one whose session has not expired yet; the
        view is caught up only when every partition is, so wait (checking once a second).
        """
        others = [tp for tp in self.result.targets if tp not in self._assigned]
        if not others:
            return True
        now = time.monotonic()
        if now - self._last_store_check < 1.0:
            return False
        self._last_store_check = now
        if not self._settle(consumer):
            return False
        stored = self.store.positions()
        return all(
            self._reached(tp, position.next_offset if (position := stored.get(tp)) else None)
            for tp in others
        )


def _commit_sync(consumer: Consumer, offsets: list[TopicPartition]) -> None:
    """Commit offsets to Kafka and check every partition's error (lag tools read them)."""
    committed = consumer.commit(offsets=offsets, asynchronous=False) or []
    failed = [tp for tp in committed if tp.error is not None]
    if failed:
        raise KafkaException(failed[0].error)
