"""A Python client for logstream's HTTP API, blocking (`LogstreamClient`) and asyncio
(`AsyncLogstreamClient`).

    with LogstreamClient("http://127.0.0.1:8000") as client:
        receipt = client.send("likes", {"url": "https://example.com/a", "user_id": "u1"})
        client.get_view("likes-by-url", params={"url": "https://example.com/a"},
                        wait_for=[receipt])

Both share one implementation of retries, batching and receipts (`operations`); they differ
only in how they make a request and how they wait.
"""

from __future__ import annotations

from logstream.client.aio import AsyncLogstreamClient
from logstream.client.bodies import Encoding
from logstream.client.errors import (
    BatchIncompleteError,
    ClientError,
    RequestFailedError,
    UnreachableError,
)
from logstream.client.receipts import Receipt, wait_for_values
from logstream.client.retry import RetryPolicy
from logstream.client.sync import LogstreamClient

__all__ = [
    "AsyncLogstreamClient",
    "BatchIncompleteError",
    "ClientError",
    "Encoding",
    "LogstreamClient",
    "Receipt",
    "RequestFailedError",
    "RetryPolicy",
    "UnreachableError",
    "wait_for_values",
]
