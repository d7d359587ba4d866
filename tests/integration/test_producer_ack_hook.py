"""The producer's ack hook (`EventProducer.on_ack`, which feeds the ack-latency histogram)
runs on the producer's own loop, even for a send awaited on another thread's loop: the
metrics tally it without a lock."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from logstream.producer import EventProducer, OutgoingMessage
from logstream.settings import Settings

SENDS = 5


@pytest.fixture
def loop_in_thread() -> Iterator[tuple[asyncio.AbstractEventLoop, int]]:
    """An event loop running in a thread of its own, and that thread's id."""
    loop = asyncio.new_event_loop()
    started: Future[int] = Future()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set_result, threading.get_ident())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield loop, started.result(timeout=10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def test_acks_of_sends_on_another_loop_reach_the_hook_on_the_producers_loop(
    settings: Settings, make_topic: Any, loop_in_thread: tuple[asyncio.AbstractEventLoop, int]
) -> None:
    topic = make_topic(1)
    own_loop, own_thread = loop_in_thread
    producer = EventProducer(settings)
    asyncio.run_coroutine_threadsafe(producer.start(), own_loop).result(timeout=30)
    calls: list[tuple[int, float]] = []
    producer.on_ack = lambda seconds: calls.append((threading.get_ident(), seconds))

    async def send_from_here() -> None:  # this thread's loop, not the producer's
        for i in range(SENDS):
            await producer.send(topic, b"k", f"v{i}".encode(), 1_700_000_000_000)
        outcomes = await producer.send_many(
            [OutgoingMessage(topic, b"k", b"batch", 1_700_000_000_000)] * 3
        )
        assert all(o.ok for o in outcomes)

    try:
        asyncio.run(send_from_here())
        # The hand-over is queued on the producer's loop: a round trip there drains it.
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), own_loop).result(timeout=10)
        assert len(calls) == SENDS + 1  # one per send, one for the batch
        assert {thread for thread, _ in calls} == {own_thread}
        assert all(seconds >= 0 for _, seconds in calls)
    finally:
        asyncio.run_coroutine_threadsafe(producer.close(5), own_loop).result(timeout=30)
