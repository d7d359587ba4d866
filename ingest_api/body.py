"""Reading request bodies defensively: media type, size (declared and actual), JSON, NDJSON.

Every failure is an `ApiError` with a 4xx status; nothing a client sends can cause a 500.
Parsing costs CPU in proportion to what a client sends, so it is bounded (NDJSON stops at
the batch limit and after `MAX_REPORTED_LINES` bad lines) and a large body is parsed on a
worker thread (`off_loop`), keeping the event loop free for every other request.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Collection
from typing import Any, TypeVar

import anyio.to_thread
import orjson
from fastapi import Request

from ingest_api.errors import ApiError
from ingest_api.models import FieldError

__all__ = [
    "JSON",
    "MAX_REPORTED_LINES",
    "NDJSON",
    "OFF_LOOP_BYTES",
    "media_type",
    "off_loop",
    "parse_json",
    "parse_ndjson",
    "read_body",
    "too_many_events",
]

JSON = "application/json"
NDJSON = "application/x-ndjson"
MAX_REPORTED_LINES = 100  # NDJSON reading stops at this many bad lines: all that is reported
OFF_LOOP_BYTES = 64 * 1024  # a body larger than this is parsed on a worker thread

T = TypeVar("T")


def media_type(request: Request, allowed: Collection[str]) -> str:
    """The request's media type if it is one of `allowed` (parameters such as charset ignored)."""
    raw = request.headers.get("content-type", "")
    kind = raw.split(";", 1)[0].strip().lower()
    if kind in allowed:
        return kind
    wanted = " or ".join(sorted(allowed))
    got = f"Content-Type {raw!r}" if raw else "no Content-Type"
    raise ApiError(415, "unsupported_media_type", f"got {got}; send Content-Type: {wanted}")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing more than `limit` bytes before and while reading it."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "bad_request", "Content-Length is not a number") from None
        if size > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "payload_too_large",
        f"the body is larger than {limit:,} bytes (LOGSTREAM_INGEST_MAX_BODY_BYTES); "
        "split it into smaller batches",
    )


def too_many_events(max_events: int, count: int | None = None) -> ApiError:
    """The 413 of a batch over `LOGSTREAM_INGEST_MAX_BATCH_EVENTS` (`count` None: reading
    stopped as soon as there were more, so how many is not known)."""
    held = f"{count:,}" if count is not None else f"more than {max_events:,}"
    return ApiError(
        413,
        "too_many_events",
        f"{held} events; at most {max_events:,} per batch (LOGSTREAM_INGEST_MAX_BATCH_EVENTS)",
    )


async def off_loop(parse: Callable[..., T], body: bytes, *args: Any) -> T:
    """`parse(body, *args)`, on a worker thread when the body is large: parsing megabytes
    must not stall health checks and every other request of this worker."""
    if len(body) <= OFF_LOOP_BYTES:
        return parse(body, *args)
    return await anyio.to_thread.run_sync(parse, body, *args)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _loads(data: bytes) -> Any:
    """Strict JSON (no NaN/Infinity); every failure, even deep nesting, is a ValueError.

    orjson parses well-formed UTF-8 several times faster than the standard library, which
    matters on the single-event path. What it refuses is decided again by `json.loads`, so
    the rare odd-but-valid document (UTF-16, a lone surrogate escape) still parses and is
    then judged by the validation with a 422 naming its field, as before.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise ApiError(400, "malformed_json", "the body is empty; send a JSON document")
    try:
        return _loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None


def parse_ndjson(body: bytes, max_events: int | None = None) -> list[Any]:
    """One JSON value per line; blank lines are skipped, `index` counts events, not lines.

    Reading stops after `MAX_REPORTED_LINES` bad lines (400 listing them) and as soon as
    there are more than `max_events` events (413 `too_many_events`, or the 400 if a bad line
    came first): a body of millions of bad or tiny lines costs no more than a full batch.
    Lines are read one at a time, never split into a list of them all."""
    items: list[Any] = []
    problems: list[FieldError] = []
    stopped_at: int | None = None
    for line_no, line in enumerate(io.BytesIO(body), start=1):
        if not line.strip():
            continue
        try:
            items.append(_loads(line))
        except ValueError as exc:
            problems.append(
                FieldError(index=len(items) + len(problems), message=f"line {line_no}: {exc}")
            )
        if len(problems) == MAX_REPORTED_LINES or (
            max_events is not None and len(items) + len(problems) > max_events
        ):
            stopped_at = line_no
            break
    if problems:
        counted = f"{len(problems)} line(s) are"
        if stopped_at is not None:
            counted = f"at least {counted}"
        message = f"{counted} not valid JSON"
        if stopped_at is not None:
            message += f" (reading stopped at line {stopped_at:,})"
        raise ApiError(400, "malformed_json", message, problems)
    if stopped_at is not None and max_events is not None:
        raise too_many_events(max_events)
    return items
