"""The one consume loop every view runs on.

Commit step, in order (docs/conventions.md, "One loop, one commit step"):
  1. flush dead letters (acks=all) so nothing skipped is lost;
  2. in ONE store transaction, add the batch's aggregated counter deltas and record each
     partition's next offset, fenced on the offset the batch started from;
  3. commit the same offsets to Kafka, for lag tools only: the store is authoritative, so
     this commit is asynchronous and a failure here is logged, not fatal.
On assignment the runtime seeks to the offsets stored in the view store (earliest when none),
so a crash at any instant, a restart or a rebalance never loses or doubles a count.

Faults are ridden out, not waited on without a bound (issue 9): a broker or coordinator
outage only makes consume calls come back empty; a transient store failure (disk full, ...)
makes the commit thread retry the same flush while this loop holds reading but keeps polling;
a rebalance or a stop gives up a flush that cannot land rather than wait for it (the store's
offsets did not move, so its events are read again); `Consumer.close()` is bounded; and a
watchdog exits the process if the loop or a store attempt stops making progress at all.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
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

from logstream.aggregate_states import Folder
from logstream.codec import Codec
from logstream.errors import LogstreamError, StaleOffsetError, ViewCodeError
from logstream.kafka.admin import topic_watermarks
from logstream.kafka.config import consumer_config
from logstream.kafka.timestamps import event_time
from logstream.runtime.bounded import call_bounded
from logstream.runtime.committer import Committer
from logstream.runtime.dedupe import EventIdWindow
from logstream.runtime.dlq import DeadLetters
from logstream.runtime.kafka_offsets import KafkaOffsetCommits
from logstream.runtime.pending import PendingBatch
from logstream.runtime.view_output import aggregate_value_check, key_check
from logstream.runtime.watchdog import Watch, Watchdog, exit_process
from logstream.settings import Settings
from logstream.stores.base import Counter, Position, ViewStore
from logstream.topics import resolve_topics
from logstream.view import View

__all__ = ["RunResult", "ViewRunner"]

log = logging.getLogger("logstream.runtime")

TP = tuple[str, int]
CATCH_UP_FLUSH_FACTOR = 5
SETTLE_SLICE_S = 0.2
"""Waits for the commit thread are cut into slices so a stop or a stall is noticed."""
STOP_FLUSH_GRACE_S = 4.0
"""After a stop, how long a healthy in-flight or final flush may still take to land."""
CLOSE_BOUND_S = 2.5
"""How long `Consumer.close()` may take (it waits for the coordinator, which may be gone)."""
SHUTDOWN_LIMIT_S = 9.5
"""The watchdog's backstop: a stop request must have ended `run()` within this."""


@dataclass
class RunResult:
    events_applied: int = 0
    events_skipped: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    flushes: int = 0
    fenced: int = 0
    rebalances: int = 0  # assignments, revocations and losses of partitions
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
        on_stall: Callable[[str], None] = exit_process,
        on_commit: Callable[[float, int], None] | None = None,
    ) -> None:
        """`on_stall(reason)` is what the watchdog does when no progress is possible for
        `settings.consumer_stall_timeout_s` (default: log and exit the process non-zero).
        `on_progress(messages)` is called once per consumed batch and
        `on_commit(seconds, events)` once per flush that landed, from the commit thread
        (metrics hooks)."""
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
        self._stop_requested: float | None = None
        self._last_round = time.monotonic()
        self._on_stall = on_stall
        self._on_commit = on_commit
        self._held: list[TopicPartition] | None = None  # paused while the store is down
        self._kafka_commits = KafkaOffsetCommits(self.group_id)
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
        aggregates = tuple(getattr(view, "aggregates", ()))
        # None: the view declares no aggregates and `_apply` only counts (its fast path).
        self._folder = Folder(aggregates) if aggregates else None
        # What the view's code returns is checked before it touches a cell (view_output).
        self._check_keys = key_check(view)
        self._check_values = aggregate_value_check(aggregates)
        self.result = RunResult()
        self._consumer: Consumer | None = None
        self._committer: Committer | None = None

    def stop(self) -> None:
        """Ask the loop to finish its batch, flush and close (safe from a signal handler).

        `run()` returns within seconds whatever the broker or the store are doing: a flush
        that cannot land within STOP_FLUSH_GRACE_S is given up (its events are read again
        after a restart) and closing the Kafka consumer is bounded."""
        if self._stop_requested is None:
            self._stop_requested = time.monotonic()
        self._stopping = True

    # ----- rebalance callbacks -------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._settle(consumer, in_rebalance=True)
        self._held = None
        offsets = self._start_from_store([(tp.topic, tp.partition) for tp in partitions])
        for tp in partitions:
            tp.offset = offsets[(tp.topic, tp.partition)]
        self._assigned = set(offsets)
        self._assignment_seen = True
        self.result.rebalances += 1
        consumer.assign(partitions)
        log.info(
            "%s: assigned %s",
            self.group_id,
            sorted(offsets),
            extra={"partitions": [f"{t}[{p}]@{o}" for (t, p), o in sorted(offsets.items())]},
        )

    def _start_from_store(self, tps: list[TP]) -> dict[TP, int]:
        """(Re)start `tps` at their stored positions: track them for fencing, take their
        backfill guards, and return where to read each from (see `_start_offset`)."""
        stored = self.store.positions()
        tracked = {tp: stored.get(tp) for tp in tps}
        offsets = {tp: self._start_offset(tp, position) for tp, position in tracked.items()}
        self._pending.track(tracked)
        self._guards = {tp: p for tp, p in tracked.items() if p and p.guard_offset is not None}
        return offsets

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
        self._flush(consumer, in_rebalance=True)
        self._held = None
        self._forget([(tp.topic, tp.partition) for tp in partitions])
        self._assigned.clear()
        self._assignment_seen = False  # caught up means nothing until the next assignment
        self.result.rebalances += 1
        consumer.unassign()

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._settle(consumer, in_rebalance=True)
        self._held = None
        log.warning("%s: partitions lost; dropping the unflushed batch", self.group_id)
        self._drop_batch()
        self._forget([(tp.topic, tp.partition) for tp in partitions])
        self._assigned.clear()
        self._assignment_seen = False
        self.result.rebalances += 1
        consumer.unassign()

    # ----- the loop ------------------------------------------------------------------------
    def run(self) -> RunResult:
        conf = consumer_config(self.settings, self.group_id, **self._overrides)
        conf.setdefault("on_commit", self._kafka_commits.on_commit)
        consumer = Consumer(conf)
        self._consumer = consumer
        committer = Committer(
            self.store, self._dead_letters, self.group_id, on_commit=self._on_commit
        )
        self._committer = committer
        watchdog = self._watchdog(committer)
        self._last_round = time.monotonic()
        if watchdog is not None:
            watchdog.start()
        try:
            if self.until_caught_up:
                self.result.targets = self._end_offsets(consumer)
            consumer.subscribe(
                list(self.topics),
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            try:
                self._loop(consumer)
            except ViewCodeError:
                # The flush in flight holds only events before the bad one: let it land
                # (bounded by the stop grace); the batch holding the bad event was dropped.
                if self._stop_requested is None:
                    self._stop_requested = time.monotonic()
                self._settle(consumer)
                raise
            self._flush(consumer)
            self._kafka_commits.commit(consumer, committer.take_offsets())
        finally:
            # Whatever happened above (even a store error), shut down without raising again
            # and without unbounded waits; rebalance callbacks fired by close() see no
            # committer and only unassign.
            self._committer = None
            committer.close()
            call_bounded(consumer.close, CLOSE_BOUND_S, f"{self.group_id}: closing the consumer")
            self._consumer = None
            if watchdog is not None:
                watchdog.stop()
        return self.result

    def _watchdog(self, committer: Committer) -> Watchdog | None:
        """Liveness, not broker health: see logstream/runtime/watchdog.py."""
        limit = self.settings.consumer_stall_timeout_s
        if limit <= 0:
            return None
        now = time.monotonic
        watches = [
            Watch("the consume loop made no round", lambda: now() - self._last_round, limit),
            Watch("a store commit attempt has not returned", committer.attempt_age, limit),
            Watch(
                "the consumer did not finish stopping",
                lambda: None if self._stop_requested is None else now() - self._stop_requested,
                SHUTDOWN_LIMIT_S,
            ),
        ]
        return Watchdog(self.group_id, watches, self._on_stall)

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
            self._last_round = time.monotonic()
            if self._committer is not None:
                self._kafka_commits.commit(consumer, self._committer.take_offsets())
            self._hold_while_store_unavailable(consumer)
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
        dead_letter_bugs = getattr(self.view, "on_error", "stop") == "dead_letter"
        guards = self._guards
        window = self._event_ids
        id_field = self.view.event_id_field or ""  # only read when the window exists
        warming = window.warm_until if window is not None else None
        fold = self._folder.fold_event if self._folder is not None else None
        check_keys = self._check_keys
        check_values = self._check_values
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
            if ts < 0:  # "no timestamp": an event at time 0 (see kafka.timestamps)
                ts = self._event_time_from_value(msg, ts)
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
            except Exception as exc:  # undecodable: a dead letter, not a stop
                self._dead_letter(msg, exc)
                next_offsets[tp] = offset + 1
                continue
            if window is not None:  # outside the try: a bug here must stop, not dead-letter
                event_id = record.get(id_field)
                if event_id is not None and window.repeat(tp, offset, event_id):
                    next_offsets[tp] = offset + 1
                    duplicates += 1
                    continue
            try:  # the view's own code: a bug in it stops the consumer (see _view_failed)
                keys = keys_of(record, ts)
                if not isinstance(keys, tuple | list):  # a generator raises while iterated
                    keys = list(keys)
                if check_keys is not None:  # keys of the wrong shape: the view's bug too
                    check_keys(keys)
                if check_values is not None:  # a sum over text: before any cell is touched
                    check_values(record)
            except Exception as exc:
                if not dead_letter_bugs:
                    raise self._view_failed(tp, offset, exc) from exc
                self._dead_letter(msg, exc)
                next_offsets[tp] = offset + 1
                continue
            if fold is not None:  # the view declares aggregates
                try:
                    fold(counters, keys, record, ts, tp[1], offset)
                except Exception as exc:  # cells may be half folded: stop, whatever the policy
                    # (field types were checked above, so this is not the event's fault)
                    raise self._view_failed(tp, offset, exc) from exc
            else:
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

    def _view_failed(self, tp: TP, offset: int, exc: Exception) -> ViewCodeError:
        """Log the view's traceback and drop the unflushed batch: the stored offsets stay
        at the last good flush, so a restart after the fix re-reads from there exactly."""
        error = ViewCodeError(self.view.name, tp[0], tp[1], offset, exc)
        log.error(
            "%s: %s\n%s",
            self.group_id,
            error,
            "".join(traceback.format_exception(exc)).rstrip(),
        )
        self._drop_batch()
        self._stopping = True
        return error

    def _dead_letter(self, msg: Message, exc: Exception) -> None:
        """Hold a dead letter with the batch: produced and counted only if the batch is
        flushed (a dropped batch is read, and dead-lettered, again: see runtime.dlq)."""
        self._dead_letters.hold(msg, exc)
        self._pending.dead_letters += 1

    def _drop_batch(self) -> None:
        """Forget the unflushed batch, its dead letters included (its events are read again)."""
        self._pending.clear()
        self._dead_letters.discard()

    def _event_time_from_value(self, msg: Message, record_ms: int) -> int:
        """The event time of a record written without a timestamp, from its value."""
        try:
            _writer, record = self.codec.decode(msg.value())
        except Exception:  # undecodable: it becomes a dead letter; any time will do
            return 0
        field_name = self.view.event_time_field
        return event_time(record_ms, record.get(field_name) if field_name else None)

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

    def _flush(self, consumer: Consumer, *, wait: bool = True, in_rebalance: bool = False) -> None:
        """Hand the batch to the committer; with `wait`, return only once it is committed
        (or could not be: see `_settle`). A no-op once the runner is shutting down."""
        self._last_flush = time.monotonic()
        committer = self._committer
        if committer is None or not self._settle(consumer, in_rebalance=in_rebalance):
            return
        pending = self._pending
        if pending.dirty:
            flush = pending.to_flush()
            if self._event_ids is not None:
                ranges, expire = self._event_ids.close_ranges(pending.next_offsets)
                flush = dataclasses.replace(flush, event_ids=ranges, event_ids_expire=expire)
            self.result.dead_letters += self._dead_letters.release()
            pending.committed()  # the next batch is fenced on these offsets
            committer.submit(flush)
            self.result.flushes += 1
        if wait:
            self._settle(consumer, in_rebalance=in_rebalance)

    def _settle(self, consumer: Consumer, *, in_rebalance: bool = False) -> bool:
        """Wait for the in-flight flush; True once it landed and nothing is in flight.

        False when the batch read since cannot be handed over now:
        * the flush was fenced: what was read since is dropped, rewound to stored offsets;
        * the store is unavailable (the commit thread is retrying) and this is the loop:
          the batch is kept, the loop holds reading and tries again on a later round;
        * the store is unavailable during a rebalance, or a stop did not see the flush land
          within its grace: the flush and the batch are given up; the stored offsets did not
          move, so whoever owns the partitions next reads those events again.
        """
        committer = self._committer
        if committer is None:
            return True
        while True:
            try:
                if committer.wait(SETTLE_SLICE_S):
                    return True
            except StaleOffsetError as exc:
                self.result.fenced += 1
                log.warning(
                    "%s: flush fenced (%s); rewinding to stored offsets", self.group_id, exc
                )
                self._drop_batch()
                self._rewind(consumer)
                return False
            # Waiting on a live commit thread is progress; its attempt is watched on its own.
            self._last_round = time.monotonic()
            if self._stopping:
                if committer.retrying or self._stop_grace_over():
                    self._give_up(committer, "stopping")
                    return False
            elif committer.retrying:
                if in_rebalance:
                    self._give_up(committer, "rebalancing")
                return False

    def _stop_grace_over(self) -> bool:
        started = self._stop_requested
        return started is not None and time.monotonic() - started > STOP_FLUSH_GRACE_S

    def _give_up(self, committer: Committer, why: str) -> None:
        """Abandon the in-flight flush and drop the batch read since (both unstored)."""
        committer.abandon()
        dropped = self._pending.events
        self._drop_batch()
        log.warning(
            "%s: %s before the in-flight flush could land; gave it up with %d unflushed "
            "event(s): the store's offsets did not move, so they are read again",
            self.group_id,
            why,
            dropped,
        )

    def _hold_while_store_unavailable(self, consumer: Consumer) -> None:
        """While the commit thread waits for the store, pause fetching (memory stays at one
        batch plus one flush) but keep polling: the group keeps this member, rebalances
        are served and a stop is noticed. Resume once the flush has landed."""
        committer = self._committer
        retrying = committer is not None and committer.retrying
        try:
            if retrying and self._held is None:
                self._held = consumer.assignment()
                consumer.pause(self._held)
                log.info("%s: reading paused until the store accepts the flush", self.group_id)
            elif self._held is not None and not retrying:
                held, self._held = self._held, None
                consumer.resume(held)
                log.info("%s: reading resumed", self.group_id)
        except KafkaException as exc:  # e.g. a partition revoked meanwhile
            log.warning("%s: pause/resume failed: %s", self.group_id, exc)

    def _rewind(self, consumer: Consumer) -> None:
        """After a fenced flush, seek every assigned partition back to its stored position."""
        for tp, offset in self._start_from_store(sorted(self._assigned)).items():
            try:
                consumer.seek(TopicPartition(tp[0], tp[1], offset))
            except KafkaException as exc:
                # Reading on from where we are would skip [stored, current): stop instead;
                # a restart (the supervisor's) starts exactly at the stored offsets.
                raise LogstreamError(
                    f"{self.group_id}: cannot rewind {tp[0]}[{tp[1]}] to offset {offset} "
                    f"after a fenced flush: {exc}"
                ) from exc

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
