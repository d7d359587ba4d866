"""The commit step, run beside the consume loop: while one batch commits, the next is read.

At most one flush is in flight, so memory stays bounded, and the order of commits is the
order of batches. The consume thread waits for the in-flight flush before it touches the
store itself (assignment, rewind, caught-up checks, shutdown), but never without a bound:

* this thread never calls Kafka: the offsets the store accepted are handed back
  (`take_offsets`) for the consume thread to commit to Kafka asynchronously (lag tools only;
  the store is authoritative). confluent-kafka's `Consumer.commit()`, even asynchronous,
  blocks a foreign thread while the consume thread is inside a rebalance callback; with the
  callback waiting for this thread, that was a deadlock (the hang of issue 9);
* a transient store failure (disk full, SQLite busy or I/O error, PostgreSQL restarting) is
  retried with capped backoff on the same Flush, whose transaction was rolled back and whose
  fencing offsets are unchanged, so the retry lands exactly once; meanwhile `retrying` is
  True so the loop can hold reading, and rebalances and stops can give the flush up instead
  of waiting for space that may never come (`abandon`: the offsets were not stored, so the
  events are read again by whoever owns the partitions next);
* the worker is a daemon thread: a store call stuck beyond every bound cannot keep the
  process alive (the watchdog reports it through `attempt_age`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from confluent_kafka import TopicPartition

from logstream.runtime.dlq import DeadLetters, DeadLettersUnconfirmed
from logstream.runtime.retry import Backoff, is_transient_store_error
from logstream.stores.base import Flush, ViewStore

__all__ = ["Committer", "FlushAbandoned"]

log = logging.getLogger("logstream.runtime")

DLQ_ATTEMPT_TIMEOUT_S = 5.0
"""How long one attempt waits for dead-letter acks (a broker outage makes it retry)."""


class FlushAbandoned(Exception):
    """The flush was given up before it landed (stop or rebalance while the store was down)."""


class _Job:
    """One flush on its way to the store, and what became of it."""

    def __init__(self, flush: Flush) -> None:
        self.flush = flush
        self.done = threading.Event()
        self.wakeup = threading.Event()  # cuts a backoff sleep short when abandoned
        self.error: BaseException | None = None
        self.abandoned = False
        self.retrying = False
        self.submitted = time.monotonic()


class Committer:
    """Runs: dead letters acknowledged -> one store transaction -> offsets handed back for
    the Kafka commit."""

    def __init__(
        self,
        store: ViewStore,
        dead_letters: DeadLetters,
        label: str,
        *,
        backoff: Backoff | None = None,
        on_commit: Callable[[float, int], None] | None = None,
    ) -> None:
        """`on_commit(seconds, events)`: called on this thread after each flush landed,
        with the time from its submission (retries included) and the events it applied;
        never for a flush that was fenced, abandoned or failed."""
        self._on_commit = on_commit
        self._store = store
        self._dead_letters = dead_letters
        self._label = label
        self._accepted: dict[tuple[str, int], int] = {}
        self._accepted_lock = threading.Lock()
        self._backoff = backoff or Backoff()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._inflight: _Job | None = None
        self._attempt_started: float | None = None
        self._thread = threading.Thread(target=self._work, name=f"commit-{label}", daemon=True)
        self._thread.start()

    @property
    def idle(self) -> bool:
        return self._inflight is None

    @property
    def retrying(self) -> bool:
        """The in-flight flush failed on a transient store error and waits to try again."""
        job = self._inflight
        return job is not None and job.retrying

    def attempt_age(self) -> float | None:
        """Seconds the current store attempt has been running (None between attempts)."""
        started = self._attempt_started
        return None if started is None else time.monotonic() - started

    def take_offsets(self) -> list[TopicPartition]:
        """The next offsets the store accepted since the last call (newest per partition),
        for the consume thread to commit to Kafka: strictly after the store transaction."""
        with self._accepted_lock:
            accepted, self._accepted = self._accepted, {}
        return [TopicPartition(t, p, offset) for (t, p), offset in sorted(accepted.items())]

    def submit(self, flush: Flush) -> None:
        """Start committing `flush`; the caller has settled the previous one (`wait`)."""
        if self._inflight is not None:
            raise RuntimeError("a flush is already in flight; wait() for it first")
        job = _Job(flush)
        self._inflight = job
        self._jobs.put(job)

    def wait(self, timeout_s: float | None = None) -> bool:
        """True once nothing is in flight (re-raising the flush's error, e.g. fenced);
        False if the flush is still being committed after `timeout_s`."""
        job = self._inflight
        if job is None:
            return True
        if not job.done.wait(timeout_s):
            return False
        self._inflight = None
        if job.error is not None:
            raise job.error
        return True

    def abandon(self) -> None:
        """Give the in-flight flush up: no further attempts; a running one may still land,
        which the store's fencing makes harmless. Never blocks."""
        job, self._inflight = self._inflight, None
        if job is not None:
            job.abandoned = True
            job.wakeup.set()

    def close(self) -> None:
        """Abandon what is in flight and let the worker end; never blocks, never raises."""
        self.abandon()
        self._jobs.put(None)

    # ----- the commit thread -------------------------------------------------------------------
    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                self._commit(job)
            except BaseException as exc:  # handed to the consume thread by wait()
                job.error = exc
            finally:
                job.done.set()

    def _commit(self, job: _Job) -> None:
        self._store_with_retries(job)
        with self._accepted_lock:
            for topic, partition, _expected, new in job.flush.positions:
                self._accepted[(topic, partition)] = new
        if self._on_commit is not None:
            try:
                self._on_commit(time.monotonic() - job.submitted, job.flush.events)
            except Exception:  # a metrics hook must never fail a flush that landed
                log.exception("%s: on_commit hook failed", self._label)

    def _store_with_retries(self, job: _Job) -> None:
        """Dead letters acknowledged, then the store transaction; transient failures of
        either are retried with backoff until they pass or the flush is abandoned."""
        backoff = self._backoff
        backoff.reset()
        first_failure: float | None = None
        attempts = 0
        while True:
            if job.abandoned:
                raise FlushAbandoned("flush abandoned before it was committed")
            attempts += 1
            self._attempt_started = time.monotonic()
            try:
                self._dead_letters.flush(DLQ_ATTEMPT_TIMEOUT_S)
                if job.abandoned:  # given up while the dead letters flushed: do not land late
                    raise FlushAbandoned("flush abandoned before it was committed")
                self._store.commit(job.flush)
            except Exception as exc:
                if not (isinstance(exc, DeadLettersUnconfirmed) or is_transient_store_error(exc)):
                    raise
                delay = backoff.next_delay()
                if first_failure is None:
                    first_failure = time.monotonic()
                    log.warning(
                        "%s: cannot commit the flush yet (%s); keeping it and retrying "
                        "(every %.0f-%.0f s) until it lands",
                        self._label,
                        exc,
                        backoff.first_s,
                        backoff.cap_s,
                    )
                else:
                    log.debug("%s: commit attempt %d failed: %s", self._label, attempts, exc)
                job.retrying = True
                self._attempt_started = None
                job.wakeup.wait(delay)
                continue
            finally:
                self._attempt_started = None
            break
        job.retrying = False
        if first_failure is not None:
            log.warning(
                "%s: flush committed after %d attempt(s), %.1f s after the first failure",
                self._label,
                attempts,
                time.monotonic() - first_failure,
            )
