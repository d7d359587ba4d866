"""The read router: `/v1/views/...` answers from the materialized views, with freshness.

Every answer carries `freshness` (offsets applied per partition, newest event time, lag) and
accepts `wait_for=partition:offset` (repeatable): the read waits, at most `wait_ms`, until
the view has applied that offset, so a client can read its own writes.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BeforeValidator

from consumers import likes_by_url as by_url
from consumers import likes_by_user as by_user
from consumers import likes_by_window as by_window
from ingest_api.query_params import MAX_TIME_MS, bad_param, parse_time_param, whole_number
from ingest_api.read_waits import read_your_writes
from ingest_api.view_readers import ViewReaders
from logstream.errors import LogstreamError
from logstream.freshness import freshness_of
from logstream.stores.base import ViewStore
from logstream.topics import resolve_topics
from logstream.view import View

__all__ = [
    "answer",
    "bucket_range",
    "decode_cursor",
    "describe",
    "encode_cursor",
    "open_view",
    "rfc3339",
    "router",
    "with_times",
]

router = APIRouter(prefix="/v1/views", tags=["views"])

BY_URL = by_url.likes_by_url
BY_USER = by_user.likes_by_user
BY_WINDOW = by_window.likes_by_window
WINDOW_SIZES = by_window.WINDOW_SIZES


def rfc3339(ms: int | None) -> str | None:
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _readers(request: Request) -> ViewReaders:
    readers: ViewReaders = request.app.state.view_readers
    return readers


def open_view(request: Request, view: View) -> tuple[ViewReaders, ViewStore, str]:
    """The view's current version and store (any read-your-writes wait is already over:
    the route's `read_your_writes` dependency awaited it without holding a thread)."""
    readers = _readers(request)
    store, version = readers.resolve(view)
    return readers, store, version


def answer(
    readers: ViewReaders, view: View, store: ViewStore, version: str, body: dict[str, Any]
) -> dict[str, Any]:
    topics = resolve_topics(readers.settings, view.topics)
    fresh = freshness_of(store.stats(), topics, readers.end_offsets)
    body["freshness"] = {
        "view_version": version,
        "offsets": fresh.offsets,
        "newest_event_at": rfc3339(fresh.newest_event_ms),
        "lag": fresh.lag,
        "lag_stale": fresh.lag_stale,
        "dead_letters": fresh.dead_letters,
        "skipped": fresh.skipped,
    }
    return body


def bucket_range(view: View, since: str | None, until: str | None) -> tuple[int | None, int | None]:
    """An optional [since, until) event-time range, widened to the view's whole buckets."""
    since_ms, until_ms = parse_time_param("since", since), parse_time_param("until", until)
    if since_ms is not None and until_ms is not None and until_ms <= since_ms:
        raise bad_param("until", "must be later than since")
    bucket = view.bucket_ms
    if since_ms is not None:
        since_ms -= since_ms % bucket
    if until_ms is not None and until_ms % bucket:
        until_ms += bucket - until_ms % bucket
    return since_ms, until_ms


def with_times(answer: dict[str, Any]) -> dict[str, Any]:
    first, last = answer.pop("first_ms"), answer.pop("last_ms")
    return {**answer, "first_at": rfc3339(first), "last_at": rfc3339(last)}


def describe(view: View) -> dict[str, Any]:
    """What a client needs to query a view: its key, series, bucket and aggregates."""
    return {
        "group": view.name,
        "topics": list(view.topics),
        "bucket_ms": view.bucket_ms,
        "key": view.key_name,
        "series": list(view.series),
        "aggregates": [
            {"name": a.name, "kind": str(a.kind), "field": a.field} for a in view.aggregates
        ],
        "rankable": list(view.rankable()),
        "on_error": view.on_error,
    }


@router.get("")
def list_views(request: Request) -> dict[str, Any]:
    """Every registered view with its freshness (a view whose store cannot be read says
    why in `error`, with `freshness` null), and every broken registration with its error."""
    readers = _readers(request)
    items = []
    for name, view in request.app.state.views.items():
        item = {"name": name, **describe(view)}
        try:
            store, version = readers.resolve(view)
            items.append(answer(readers, view, store, version, item))
        except LogstreamError as exc:  # e.g. a store of another shape: this view only
            items.append({**item, "error": str(exc), "freshness": None})
    broken = [
        {"origin": b.origin, "error": b.error}
        for b in getattr(request.app.state, "broken_views", [])
    ]
    return {"views": items, "broken": broken}


@router.get("/likes-by-url", dependencies=[read_your_writes(BY_URL)])
def likes_by_url(
    request: Request,
    url: Annotated[str, Query(min_length=1, max_length=2048, description="the URL")],
) -> dict[str, Any]:
    """Likes of one URL, with first and last event time (count 0 if never liked)."""
    view = BY_URL
    readers, store, version = open_view(request, view)
    return answer(readers, view, store, version, with_times(by_url.lookup(store, url)))


@router.get("/likes-by-url/top", dependencies=[read_your_writes(BY_URL)])
def likes_by_url_top(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000), BeforeValidator(whole_number)] = 10,
    since: Annotated[str | None, Query(description="RFC 3339 or epoch ms (inclusive)")] = None,
    until: Annotated[str | None, Query(description="RFC 3339 or epoch ms (exclusive)")] = None,
) -> dict[str, Any]:
    """URLs ranked by likes, ties by URL; with since/until, within that event-time range
    (widened to whole hours: the view keeps hourly buckets)."""
    view = BY_URL
    since_ms, until_ms = bucket_range(view, since, until)
    bucket = view.bucket_ms
    readers, store, version = open_view(request, view)
    items = by_url.top(store, limit, since_ms, until_ms)
    return answer(
        readers,
        view,
        store,
        version,
        {
            "items": items,
            "limit": limit,
            "since": rfc3339(since_ms),
            "until": rfc3339(until_ms),
            "granularity_ms": bucket,
        },
    )


@router.get("/likes-by-user", dependencies=[read_your_writes(BY_USER)])
def likes_by_user(
    request: Request,
    user_id: Annotated[str, Query(min_length=1, max_length=512)],
) -> dict[str, Any]:
    """Likes given by one user, with first and last event time."""
    view = BY_USER
    readers, store, version = open_view(request, view)
    return answer(readers, view, store, version, with_times(by_user.lookup(store, user_id)))


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        start_ms = int(base64.urlsafe_b64decode(cursor.encode() + b"==").decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad_param("cursor", "not a cursor returned by this endpoint") from None
    if abs(start_ms) > MAX_TIME_MS:  # a forged one would overflow the store's integers
        raise bad_param("cursor", "not a cursor returned by this endpoint")
    return start_ms


def encode_cursor(start_ms: int) -> str:
    return base64.urlsafe_b64encode(str(start_ms).encode()).decode().rstrip("=")


@router.get("/likes-by-window", dependencies=[read_your_writes(BY_WINDOW)])
def likes_by_window(
    request: Request,
    size: Annotated[
        str,
        Query(description="window size: 1m, 1h or 1d", json_schema_extra={"enum": [*WINDOW_SIZES]}),
    ],
    since: Annotated[str, Query(description="RFC 3339 or epoch ms (inclusive)")],
    until: Annotated[str, Query(description="RFC 3339 or epoch ms (exclusive)")],
    url: Annotated[str | None, Query(min_length=1, max_length=2048)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000), BeforeValidator(whole_number)] = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Tumbling-window counts in time order, windows aligned to the UTC epoch; without
    `url`, totals over all URLs. Windows without likes are omitted."""
    if size not in WINDOW_SIZES:
        raise bad_param("size", f"{size!r} is not one of {', '.join(WINDOW_SIZES)}")
    since_ms, until_ms = parse_time_param("since", since), parse_time_param("until", until)
    assert since_ms is not None and until_ms is not None
    if until_ms <= since_ms:
        raise bad_param("until", "must be later than since")
    after = decode_cursor(cursor)
    view = BY_WINDOW
    readers, store, version = open_view(request, view)
    rows = by_window.windows(store, size, url, since_ms, until_ms, limit + 1, after)
    more = len(rows) > limit
    rows = rows[:limit]
    windows = [
        {"start": rfc3339(r["start"]), "end": rfc3339(r["end"]), "count": r["count"]} for r in rows
    ]
    next_cursor = encode_cursor(rows[-1]["start"]) if more and rows else None
    return answer(
        readers,
        view,
        store,
        version,
        {
            "size": size,
            "url": url,
            "since": rfc3339(since_ms),
            "until": rfc3339(until_ms),
            "windows": windows,
            "next_cursor": next_cursor,
        },
    )
