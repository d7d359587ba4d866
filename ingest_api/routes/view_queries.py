"""The query API every view gets from its declaration (docs/views.md, "Query routes").

For each registered view NAME, with K its `key_name` (e.g. `url`):
* `GET /v1/views/NAME/key?K=...[&since&until][&series]`: one key over an optional
  event-time range: count, first and last event time, and every declared aggregate;
* `GET /v1/views/NAME/top?[by][&limit][&since&until][&series]`: keys ranked by `count` or
  any sum/min/max/distinct aggregate, value descending then key ascending;
* `GET /v1/views/NAME/windows?K=...&size&since&until[&limit][&cursor][&series]`: epoch-aligned
  windows of any multiple of the view's bucket, in time order, paged by cursor.
Every answer carries `freshness` and honours `wait_for`/`wait_ms` (read your writes),
through the same helpers as the likes routes. A route whose path a specific route already
serves (`/v1/views/likes-by-url/top`) is not generated: the specific one keeps its answer.

No `from __future__ import annotations` here: the routes are built per view at run time,
and FastAPI must see their parameter annotations (alias = the view's key name) as objects.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BeforeValidator

from ingest_api.query_params import bad_param, parse_duration_param, parse_time_param, whole_number
from ingest_api.read_waits import read_your_writes
from ingest_api.routes.views import (
    answer,
    bucket_range,
    decode_cursor,
    encode_cursor,
    open_view,
    rfc3339,
)
from logstream.aggregates import Kind
from logstream.stores.base import Summary, window_bounds
from logstream.view import View

__all__ = ["view_query_router"]

Since = Annotated[
    str | None, Query(description="RFC 3339 or epoch ms (inclusive; widened to whole buckets)")
]
Until = Annotated[
    str | None, Query(description="RFC 3339 or epoch ms (exclusive; widened to whole buckets)")
]
_ZERO_WHEN_EMPTY = (Kind.SUM, Kind.DISTINCT)  # as the store answers them for no events


def view_query_router(views: dict[str, View], taken: set[tuple[str, str]]) -> APIRouter:
    """The generated routes of `views`, leaving out any (method, path) already in `taken`."""
    router = APIRouter(prefix="/v1/views")
    for view in views.values():
        if not view.series:  # a subclass that did not declare its series: nothing to ask
            continue
        for suffix, endpoint, summary in _endpoints(view):
            path = f"/{view.name}/{suffix}"
            if ("GET", "/v1/views" + path) in taken:
                continue
            router.add_api_route(
                path,
                endpoint,
                methods=["GET"],
                summary=summary,
                tags=[f"view {view.name}"],
                name=f"{view.name}-{suffix}",
                dependencies=[read_your_writes(view)],
            )
    return router


def _series_of(view: View, series: str | None) -> str:
    if series is None:
        return view.series[0]
    if series not in view.series:
        raise bad_param("series", f"{series!r} is not one of {', '.join(view.series)}")
    return series


def _summary_fields(view: View, summary: Summary | None) -> dict[str, Any]:
    """count, first_at, last_at and each aggregate (null when the key has no events)."""
    if summary is None:
        values: dict[str, Any] = {
            a.name: 0 if a.kind in _ZERO_WHEN_EMPTY else None for a in view.aggregates
        }
        return {"count": 0, "first_at": None, "last_at": None, **values}
    return {
        "count": summary.count,
        "first_at": rfc3339(summary.first_ms),
        "last_at": rfc3339(summary.last_ms),
        **{a.name: summary.values.get(a.name) for a in view.aggregates},
    }


def _endpoints(view: View) -> list[tuple[str, Any, str]]:
    """The three endpoints of one view, closed over it (the key's query name is its own)."""
    key_name = view.key_name
    series_doc = f"series: {', '.join(view.series)} (default {view.series[0]})"
    by_doc = f"rank by: {', '.join(view.rankable())}"
    Series = Annotated[
        str, Query(description=series_doc, json_schema_extra={"enum": list(view.series)})
    ]
    Key = Annotated[str, Query(alias=key_name, max_length=2048, description=f"the {key_name}")]

    def one_key(
        request: Request,
        key: Key,
        since: Since = None,
        until: Until = None,
        series: Series = view.series[0],
    ) -> dict[str, Any]:
        name = _series_of(view, series)
        since_ms, until_ms = bucket_range(view, since, until)
        readers, store, version = open_view(request, view)
        summary = store.summary(name, key, since_ms, until_ms)
        body = {
            key_name: key,
            "series": name,
            **_summary_fields(view, summary),
            "since": rfc3339(since_ms),
            "until": rfc3339(until_ms),
            "granularity_ms": view.bucket_ms,
        }
        return answer(readers, view, store, version, body)

    def top(
        request: Request,
        by: Annotated[str, Query(description=by_doc)] = "count",
        limit: Annotated[int, Query(ge=1, le=1000), BeforeValidator(whole_number)] = 10,
        since: Since = None,
        until: Until = None,
        series: Series = view.series[0],
    ) -> dict[str, Any]:
        if by not in view.rankable():
            raise bad_param("by", f"{by!r} is not one of {', '.join(view.rankable())}")
        name = _series_of(view, series)
        since_ms, until_ms = bucket_range(view, since, until)
        readers, store, version = open_view(request, view)
        ranked = store.rank(name, by, limit, since_ms, until_ms)
        body = {
            "items": [{key_name: key, by: value} for key, value in ranked],
            "by": by,
            "limit": limit,
            "series": name,
            "since": rfc3339(since_ms),
            "until": rfc3339(until_ms),
            "granularity_ms": view.bucket_ms,
        }
        return answer(readers, view, store, version, body)

    def windows(
        request: Request,
        key: Key,
        size: Annotated[
            str,
            Query(description=f"a multiple of {view.bucket_ms} ms: e.g. 1h, 15m, 1d or ms"),
        ],
        since: Annotated[
            str, Query(description="RFC 3339 or epoch ms (inclusive; widened to whole windows)")
        ],
        until: Annotated[
            str, Query(description="RFC 3339 or epoch ms (exclusive; widened to whole windows)")
        ],
        limit: Annotated[int, Query(ge=1, le=10_000), BeforeValidator(whole_number)] = 100,
        cursor: Annotated[str | None, Query(description="next_cursor of the last page")] = None,
        series: Series = view.series[0],
    ) -> dict[str, Any]:
        size_ms = parse_duration_param("size", size, view.bucket_ms)
        since_ms, until_ms = parse_time_param("since", since), parse_time_param("until", until)
        assert since_ms is not None and until_ms is not None
        if until_ms <= since_ms:
            raise bad_param("until", "must be later than since")
        after = decode_cursor(cursor)
        name = _series_of(view, series)
        # Whole windows only: the range answered is since floored and until ceiled to the
        # window size, and the answer says so (as key and top do with buckets).
        since_ms, until_ms = window_bounds(size_ms, since_ms, until_ms, None)
        readers, store, version = open_view(request, view)
        rows = store.window_summaries(name, key, size_ms, since_ms, until_ms, limit + 1, after)
        more = len(rows) > limit
        rows = rows[:limit]
        body = {
            key_name: key,
            "series": name,
            "size": size,
            "size_ms": size_ms,
            "since": rfc3339(since_ms),
            "until": rfc3339(until_ms),
            "windows": [
                {
                    "start": rfc3339(start),
                    "end": rfc3339(start + size_ms),
                    **_summary_fields(view, summary),
                }
                for start, summary in rows
            ],
            "next_cursor": encode_cursor(rows[-1][0]) if more and rows else None,
        }
        return answer(readers, view, store, version, body)

    return [
        ("key", one_key, f"{view.name}: one {key_name} over an optional time range"),
        ("top", top, f"{view.name}: {key_name}s ranked by count or an aggregate"),
        ("windows", windows, f"{view.name}: windows of one {key_name}, paged"),
    ]
