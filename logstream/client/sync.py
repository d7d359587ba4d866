"""`LogstreamClient`: the blocking client (httpx.Client), for scripts, jobs and threads."""

from __future__ import annotations

import time
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

__all__ = ["LogstreamClient"]

T = TypeVar("T")


class LogstreamClient(ClientBase):
    """Sends events to ingest and reads views, retrying what is safe to retry.

    `send` and `send_many` fix each event's `event_id` before the first attempt and retry
    503, 429, 502/504 and connection errors with that id, waiting what `Retry-After` says
    (else exponential backoff): an acknowledged event is in the log, and one written twice
    by a retry is counted once. Thread-safe; use it as a context manager or `close()` it.
    """

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
        transport: httpx.BaseTransport | None = None,
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
        self._http = httpx.Client(
            base_url=base_url,
            timeout=timeout,
            transport=transport,
            headers=with_api_key(headers, api_key),
        )

    def send(
        self, event_type: str, event: Mapping[str, Any], *, encoding: Encoding = "json"
    ) -> Receipt:
        """Append one event (`event_type` as in the path: `likes`); its receipt.
        `encoding="avro"` posts it as `avro/binary` (single-object encoding)."""
        return self._drive(self._send_op(event_type, event, encoding))

    def send_many(
        self,
        event_type: str,
        events: Iterable[Mapping[str, Any]],
        *,
        batch_size: int | None = None,
    ) -> list[Receipt]:
        """Append events through `/batch`, at most `batch_size` a request; their receipts in
        order. A 503 naming `failed` events resends only those. Raises BatchIncompleteError."""
        return self._drive(self._send_many_op(event_type, events, batch_size))

    def get_view(
        self,
        view: str,
        path: str = "",
        params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        *,
        wait_for: Iterable[Receipt] | None = None,
        wait_ms: int | None = None,
    ) -> dict[str, Any]:
        """A view's answer (`get_view("likes-by-url", params={"url": u})`, path `top`...);
        with `wait_for=receipts`, one that already counts those events."""
        return self._drive(self._view_op(view, path, params, wait_for, wait_ms))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LogstreamClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _drive(self, operation: Operation[T]) -> T:
        outcome: Outcome | None = None
        while True:
            try:
                step = operation.send(outcome)
            except StopIteration as done:
                result: T = done.value
                return result
            outcome = None
            if isinstance(step, Pause):
                time.sleep(step.seconds)
            else:
                outcome = self._call(step)

    def _call(self, call: HttpCall) -> Outcome:
        try:
            return self._http.request(
                call.method,
                call.path,
                params=call.params,
                content=call.content,
                headers=call.headers,
            )
        except httpx.TransportError as exc:
            return exc
