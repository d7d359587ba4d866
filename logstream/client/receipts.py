"""Receipts: where ingest put an event, and how a read waits for it (read your writes)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["Receipt", "ReceiptLog", "receipt_from", "wait_for_values"]


@dataclass(frozen=True, slots=True)
class Receipt:
    """An acknowledged event: it is in the log at `topic`/`partition`/`offset`."""

    event_id: str
    topic: str
    partition: int
    offset: int

    @property
    def wait_for(self) -> str:
        """The `wait_for` value of a read that must see this event."""
        return f"{self.topic}:{self.partition}:{self.offset}"


def receipt_from(answer: dict[str, Any]) -> Receipt:
    """A receipt from a 202 answer, or from one `written` entry of a batch answer."""
    return Receipt(
        event_id=str(answer["event_id"]),
        topic=str(answer["topic"]),
        partition=int(answer["partition"]),
        offset=int(answer["offset"]),
    )


def wait_for_values(receipts: Iterable[Receipt]) -> list[str]:
    """One `topic:partition:offset` per partition, its highest offset: a view applies a
    partition in order, so waiting for the last event waits for all before it (and a read
    after a batch of 10,000 events sends at most one value per partition)."""
    highest: dict[tuple[str, int], int] = {}
    for r in receipts:
        key = (r.topic, r.partition)
        if highest.get(key, -1) < r.offset:
            highest[key] = r.offset
    return [f"{t}:{p}:{o}" for (t, p), o in sorted(highest.items())]


class ReceiptLog:
    """The newest receipt per partition that a client got, so that a later read can wait
    for everything it wrote (`client.get_view(..., wait_for=client.last_receipts)`).
    Thread-safe: one client may be shared by threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._newest: dict[tuple[str, int], Receipt] = {}

    def add(self, receipts: Iterable[Receipt | None]) -> None:
        with self._lock:
            for r in receipts:
                if r is None:
                    continue
                known = self._newest.get((r.topic, r.partition))
                if known is None or known.offset < r.offset:
                    self._newest[(r.topic, r.partition)] = r

    def newest(self) -> list[Receipt]:
        with self._lock:
            return sorted(self._newest.values(), key=lambda r: (r.topic, r.partition))
