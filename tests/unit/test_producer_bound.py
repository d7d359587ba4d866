"""`EventProducer.send` gives up at its bound by itself, whatever librdkafka does.

No broker is needed: nothing listens on the port, and librdkafka's own message timeout is
set far beyond the bound, so only the producer's deadline queue can answer in time.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from logstream.producer import BrokerUnavailableError, EventProducer
from logstream.settings import Settings
from tests.conftest import free_port_block


def test_single_send_fails_at_the_bound_when_no_report_comes() -> None:
    bound = 0.5
    settings = Settings(
        bootstrap_servers=f"127.0.0.1:{free_port_block(1)}", ingest_ack_timeout_s=bound
    )

    async def scenario() -> float:
        producer = EventProducer(
            settings, **{"message.timeout.ms": 60_000, "request.timeout.ms": 30_000}
        )
        await producer.start()
        try:
            started = time.monotonic()
            with pytest.raises(BrokerUnavailableError, match="did not acknowledge"):
                await producer.send("likes", b"k", b"v", 1_700_000_000_000)
            return time.monotonic() - started
        finally:
            await producer.close(timeout_s=0)

    elapsed = asyncio.run(scenario())
    assert bound <= elapsed < bound + 0.5, elapsed
