"""Read your writes without holding a thread: `wait_for=partition:offset` waits on the event
loop, polling the view store's offsets, and at most `LOGSTREAM_READ_WAITERS_MAX` requests of
one server process wait at once (the next ones get 503 + Retry-After).

Why: a waiting read used to sleep in a worker thread, so 80 of them held every thread of
the pool for 10 s and every other sync route queued behind them. Now a waiter costs a
coroutine; the offsets of a store are read at most once per poll interval, in a thread of a
small pool of its own, however many requests wait on it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import anyio
from fastapi import Depends, Query, Request
from pydantic import BeforeValidator

from ingest_api.errors import ApiError
from ingest_api.query_params import MAX_WAIT_MS, parse_wait_for, whole_number
from logstream.stores.base import Position, ViewStore
from logstream.topics import resolve_topics
from logstream.view import View

__all__ = ["POLL_S", "ReadWaits", "WaitFor", "WaitMs", "read_your_writes"]

POLL_S = 0.05
POLL_THREADS = 2
MAX_TARGETS = 256  # wait_for values per request: one per partition is the most a client needs

WaitFor = Annotated[
    list[str] | None,
    Query(
        max_length=MAX_TARGETS,
        description="`partition:offset` returned by ingest; wait until the view applied it",
    ),
]
WaitMs = Annotated[
    int | None,
    Query(ge=0, le=MAX_WAIT_MS, description="longest wait for `wait_for`, ms"),
    BeforeValidator(whole_number),
]
Positions = dict[tuple[str, int], Position]


class ReadWaits:
    """The waiters of one server process (one event loop) and their shared polls."""

    def __init__(self, max_waiters: int) -> None:
        self.max_waiters = max_waiters
        self.waiting = 0  # touched from the event loop only: no lock needed
        self._limiter: anyio.CapacityLimiter | None = None  # made on the loop, when needed
        self._polls: dict[int, tuple[float, asyncio.Future[Positions]]] = {}

    async def until_applied(
        self,
        view: View,
        store: ViewStore,
        targets: list[tuple[str, int, int]],
        budget_s: float,
    ) -> None:
        """Return once `store` applied every target; 504 after `budget_s`; 503 when too
        many requests wait already."""
        if self.waiting >= self.max_waiters:
            raise ApiError(
                503,
                "too_many_waiters",
                f"{self.waiting} reads already wait for their writes (LOGSTREAM_READ_WAITERS_MAX);"
                " retry later",
                headers={"Retry-After": "1"},
            )
        self.waiting += 1
        try:
            deadline = time.monotonic() + budget_s
            while True:
                positions = await self._positions(store)
                missing = [
                    (t, p, o)
                    for t, p, o in targets
                    if (pos := positions.get((t, p))) is None or pos.next_offset <= o
                ]
                if not missing:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    t, p, o = missing[0]
                    raise ApiError(
                        504,
                        "not_yet_applied",
                        f"{view.name} has not applied {t}:{p}:{o} within {budget_s:.1f}s; "
                        "retry later",
                        headers={"Retry-After": "1"},
                    )
                await asyncio.sleep(min(POLL_S, left))
        finally:
            self.waiting -= 1

    async def _positions(self, store: ViewStore) -> Positions:
        """The store's offsets, read at most once per POLL_S for all its waiters."""
        key = id(store)
        now = time.monotonic()
        poll = self._polls.get(key)
        if poll is None or (now - poll[0] >= POLL_S and poll[1].done()):
            if self._limiter is None:
                self._limiter = anyio.CapacityLimiter(POLL_THREADS)
            future = asyncio.ensure_future(
                anyio.to_thread.run_sync(store.positions, limiter=self._limiter)
            )
            self._polls[key] = poll = (now, future)
        return await asyncio.shield(poll[1])


def read_your_writes(view: View) -> Any:
    """A route dependency: `wait_for`/`wait_ms` of `view`, awaited before the route runs."""

    async def wait(request: Request, wait_for: WaitFor = None, wait_ms: WaitMs = None) -> None:
        if not wait_for:
            return
        readers = request.app.state.view_readers
        targets = parse_wait_for(wait_for, resolve_topics(readers.settings, view.topics)[0])
        bound_s = readers.settings.read_wait_max_s
        budget_s = min(bound_s, wait_ms / 1000) if wait_ms is not None else bound_s
        store, _version = await anyio.to_thread.run_sync(readers.resolve, view)
        await readers.waits.until_applied(view, store, targets, budget_s)

    return Depends(wait)
