"""Every client call as a sans-I/O generator, so the sync and the asyncio client share it all.

An operation yields `HttpCall` (send this, send me back the response or the transport
error) and `Pause` (sleep this long, then resume me) and returns its result. The clients
only drive it: `LogstreamClient` with httpx.Client and time.sleep, `AsyncLogstreamClient`
with httpx.AsyncClient and asyncio.sleep. Retries, batching, receipts and errors live here.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import orjson

from logstream.client.bodies import JSON, Encoding, encode_event, with_event_id
from logstream.client.errors import (
    BatchIncompleteError,
    ClientError,
    RequestFailedError,
    UnreachableError,
)
from logstream.client.receipts import Receipt, receipt_from, wait_for_values
from logstream.client.retry import Outcome, RetryPolicy, is_retryable, retry_after_s
from logstream.codec import Codec

__all__ = ["HttpCall", "Operation", "Pause", "get_view", "send_many", "send_one"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class HttpCall:
    """One HTTP request to make; the driver sends back an `Outcome`."""

    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    content: bytes | None = None
    content_type: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Content-Type": self.content_type} if self.content_type else {}


@dataclass(frozen=True, slots=True)
class Pause:
    """Wait this long before the next step (a retry's delay)."""

    seconds: float


Step = HttpCall | Pause
Operation = Generator[Step, Outcome | None, T]


def exchange(call: HttpCall, policy: RetryPolicy) -> Operation[httpx.Response]:
    """`call`, retried while its outcome is retryable; the first 2xx response, else raises."""
    retry = 0
    while True:
        outcome = yield call
        assert outcome is not None, "the driver must answer an HttpCall"
        if isinstance(outcome, httpx.Response) and outcome.is_success:
            return outcome
        if not is_retryable(outcome) or retry >= policy.max_retries:
            raise failure(outcome, call)
        retry += 1
        yield Pause(policy.delay_s(retry, outcome))


def failure(outcome: Outcome, call: HttpCall) -> ClientError:
    """The error to raise for a final outcome."""
    if isinstance(outcome, httpx.Response):
        return RequestFailedError(outcome.status_code, _body(outcome), retry_after_s(outcome))
    error = UnreachableError(f"{call.method} {call.path}: no answer: {outcome!r}")
    error.__cause__ = outcome
    return error


def send_one(
    event_type: str,
    event: Mapping[str, Any],
    policy: RetryPolicy,
    encoding: Encoding = "json",
    codec: Codec | None = None,
) -> Operation[Receipt]:
    """POST one event; its receipt once ingest has it in the log."""
    body, content_type = encode_event(event_type, with_event_id(event), encoding, codec)
    call = HttpCall("POST", f"/v1/events/{quote(event_type)}", (), body, content_type)
    response = yield from exchange(call, policy)
    return receipt_from(response.json())


def send_many(
    event_type: str,
    events: Iterable[Mapping[str, Any]],
    policy: RetryPolicy,
    batch_size: int,
) -> Operation[list[Receipt]]:
    """POST events in batches of at most `batch_size`; their receipts, in order.

    Raises BatchIncompleteError (with the receipts got so far and the events still to
    resend, ids included) when a batch cannot be completed.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    prepared = [with_event_id(e) for e in events]
    receipts: list[Receipt | None] = []
    for start in range(0, len(prepared), batch_size):
        chunk = prepared[start : start + batch_size]
        got, error = yield from _send_batch(event_type, chunk, policy)
        receipts.extend(got)
        if error is not None:
            receipts.extend([None] * (len(prepared) - len(receipts)))
            unconfirmed = [e for e, r in zip(prepared, receipts, strict=True) if r is None]
            raise BatchIncompleteError(receipts, unconfirmed, error) from error
    return [r for r in receipts if r is not None]


def _send_batch(
    event_type: str, events: Sequence[dict[str, Any]], policy: RetryPolicy
) -> Operation[tuple[list[Receipt | None], ClientError | None]]:
    """One batch until every event is acknowledged. A 503 answer says per event whether it
    is in the log: only the `failed` ones are resent (same ids). With no answer at all, the
    whole rest is resent: a copy that did land is counted once by the views."""
    receipts: list[Receipt | None] = [None] * len(events)
    pending = list(range(len(events)))
    retry = 0
    while True:
        body = orjson.dumps([events[i] for i in pending])
        call = HttpCall("POST", f"/v1/events/{quote(event_type)}/batch", (), body, JSON)
        outcome = yield call
        assert outcome is not None, "the driver must answer an HttpCall"
        if isinstance(outcome, httpx.Response):
            for entry in _written_entries(outcome):
                receipts[pending[int(entry["index"])]] = receipt_from(entry)
            pending = [i for i in pending if receipts[i] is None]
            if not pending:
                return receipts, None
            if outcome.is_success:  # a 202 must cover every event it was sent
                return receipts, failure(outcome, call)
        if not is_retryable(outcome) or retry >= policy.max_retries:
            return receipts, failure(outcome, call)
        retry += 1
        yield Pause(policy.delay_s(retry, outcome))


def _written_entries(response: httpx.Response) -> list[dict[str, Any]]:
    """The `written` entries of a batch answer (202, or a 503 that lists its events)."""
    if not (response.is_success or response.status_code == 503):
        return []
    body = _body(response)
    entries = body.get("events") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict) and e.get("status") == "written"]


def get_view(
    view: str,
    path: str,
    params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None,
    policy: RetryPolicy,
    wait_for: Iterable[Receipt] = (),
    wait_ms: int | None = None,
) -> Operation[dict[str, Any]]:
    """GET a view's answer; with `wait_for`, one that already counts those events."""
    items = list(params.items()) if isinstance(params, Mapping) else list(params or ())
    pairs = [(str(k), _param(v)) for k, v in items]
    pairs += [("wait_for", value) for value in wait_for_values(wait_for)]
    if wait_ms is not None:
        pairs.append(("wait_ms", str(wait_ms)))
    url = f"/v1/views/{quote(view)}" + (f"/{path.strip('/')}" if path.strip("/") else "")
    response = yield from exchange(HttpCall("GET", url, tuple(pairs)), policy)
    answer: dict[str, Any] = response.json()
    return answer


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text
