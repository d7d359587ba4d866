"""The commit step, run beside the consume loop: while one batch commits, the next is read.

At most one flush is in flight, so memory stays bounded at two batches, and the order of
commits is the order of batches. The consume thread waits for the in-flight flush before it
touches the store itself (assignment, rewind, caught-up checks, shutdown).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from confluent_kafka import KafkaException, TopicPartition

from logstream.runtime.dlq import DeadLetters
from logstream.stores.base import Flush, ViewStore

__all__ = ["Committer"]

log = logging.getLogger("logstream.runtime")


class Committer:
    """Runs: dead letters acknowledged -> one store transaction -> Kafka offset commit."""

    def __init__(
        self,
        store: ViewStore,
        dead_letters: DeadLetters,
        commit_to_kafka: Callable[[list[TopicPartition]], None],
        label: str,
    ) -> None:
        self._store = store
        self._dead_letters = dead_letters
        self._commit_to_kafka = commit_to_kafka
        self._label = label
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"commit-{label}")
        self._inflight: Future[None] | None = None

    @property
    def idle(self) -> bool:
        return self._inflight is None

    def submit(self, flush: Flush) -> None:
        """Start committing `flush` after the previous one; re-raises the previous error."""
        self.wait()
        self._inflight = self._executor.submit(self._commit, flush)

    def wait(self) -> None:
        """Block until the in-flight flush is committed; re-raise its error (e.g. fenced)."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            inflight.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._executor.shutdown(wait=True)

    def _commit(self, flush: Flush) -> None:
        self._dead_letters.flush()
        self._store.commit(flush)
        offsets = [TopicPartition(t, p, new) for t, p, _expected, new in flush.positions]
        try:
            self._commit_to_kafka(offsets)
        except KafkaException as exc:  # lag tools only: the store already has the truth
            log.warning("%s: Kafka offset commit failed: %s", self._label, exc)
