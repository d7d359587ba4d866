"""`AsyncLogstreamClient`: the asyncio client (httpx.AsyncClient), same calls as the sync one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import httpx

from logstream.client.base import DEFAULT_BATCH_SIZE, ClientBase, with_api_key
from logstream.client.bodies import Encoding
from logstream.client.operations import HttpCall, Operation, Pause
from logstream.client.receipts import Receipt
from logstream.client.retry import Outcome, RetryPolicy
from logstream.codec import Codec

__all__ = ["AsyncLogstreamClient"]

T = TypeVar("T")


class AsyncLogstreamClient(ClientBase):
    """`LogstreamClient` for asyncio: the same retries, batches, receipts and errors (the
    logic is shared, see `logstream.client.operations`); waits never block the loop.
    Many `send`s may run concurrently on one client. Use `async with` or `await aclose()`."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        max_retries: int = 10,
        backoff: float = 0.2,
        backoff_max: float = 10.0,
        batch_size: int = DEFAULT_BATCH_SIZE,
        codec: Codec | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        api_key: str | None = None,
    ) -> None:
        super().__init__(
            max_retries=max_retries,
            backoff=backoff,
            backoff_max=backoff_max,
            batch_size=batch_size,
            codec=codec,
            retry=retry,
        )
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout,
            transport=transport,
            headers=with_api_key(headers, api_key),
        )

    async def send(
        self, event_type: str, event: Mapping[str, Any], *, encoding: Encoding = "json"
    ) -> Receipt:
        """See `LogstreamClient.send`."""
        return await self._drive(self._send_op(event_type, event, encoding))

    async def send_many(
        self,
        event_type: str,
        events: Iterable[Mapping[str, Any]],
        *,
        batch_size: int | None = None,
    ) -> list[Receipt]:
        """See `LogstreamClient.send_many`."""
        return await self._drive(self._send_many_op(event_type, events, batch_size))

    async def get_view(
        self,
        view: str,
        path: str = "",
        params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        *,
        wait_for: Iterable[Receipt] | None = None,
        wait_ms: int | None = None,
    ) -> dict[str, Any]:
        """See `LogstreamClient.get_view`."""
        return await self._drive(self._view_op(view, path, params, wait_for, wait_ms))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncLogstreamClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _drive(self, operation: Operation[T]) -> T:
        outcome: Outcome | None = None
        while True:
            try:
                step = operation.send(outcome)
            except StopIteration as done:
                result: T = done.value
                return result
            outcome = None
            if isinstance(step, Pause):
                await asyncio.sleep(step.seconds)
            else:
                outcome = await self._call(step)

    async def _call(self, call: HttpCall) -> Outcome:
        try:
            return await self._http.request(
                call.method,
                call.path,
                params=call.params,
                content=call.content,
                headers=call.headers,
            )
        except httpx.TransportError as exc:
            return exc
