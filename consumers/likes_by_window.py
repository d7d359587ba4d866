"""likes-by-window: tumbling-window counts per URL and in total.

Only 1-minute buckets are stored; 1-hour and 1-day windows are sums of them at query time
(epoch-aligned, so every larger window is a whole number of minutes). That keeps two
counter updates per event instead of six, and a backfill can cut at any minute.

The total over all URLs is a series of its own (`all`), so no URL, not even the empty
one, can land in its row. A store written before that (the total was url "" of series
`w`) is refused with a message naming `logstream rebuild likes-by-window`: its total and
its empty-URL counts are summed in one row and cannot be told apart again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from logstream.errors import StaleLayoutError
from logstream.stores.base import ViewStore
from logstream.view import DAY_MS, HOUR_MS, MINUTE_MS, View

__all__ = [
    "ALL_SERIES",
    "ALL_URLS",
    "URL_SERIES",
    "WINDOW_SIZES",
    "cell",
    "check_layout",
    "likes_by_window",
    "windows",
]

URL_SERIES = "w"  # one key per URL
ALL_SERIES = "all"  # one key, ALL_URLS: the total over all URLs
ALL_URLS = ""
WINDOW_SIZES = {"1m": MINUTE_MS, "1h": HOUR_MS, "1d": DAY_MS}
_EVER = (-(2**60), 2**60)


def _url_and_total(event: Mapping[str, Any], event_ms: int) -> list[tuple[str, str, int]]:
    """The URL's minute and the all-URL total's minute (`keys=`: the hot path of the
    busiest built-in, called as it is)."""
    minute = event_ms - event_ms % MINUTE_MS
    return [(URL_SERIES, event["url"], minute), (ALL_SERIES, ALL_URLS, minute)]


def cell(url: str | None) -> tuple[str, str]:
    """The (series, key) holding one URL's counts, or (url None) the total's."""
    return (ALL_SERIES, ALL_URLS) if url is None else (URL_SERIES, url)


def check_layout(store: ViewStore) -> None:
    """Refuse a store written when the total was url "" of series `w`.

    Every event adds to the total, so a store of this layout that has any row of url ""
    also has total rows; one without them was written by the old layout."""
    if not store.windows(URL_SERIES, ALL_URLS, DAY_MS, *_EVER, 1):
        return
    if store.windows(ALL_SERIES, ALL_URLS, DAY_MS, *_EVER, 1):
        return
    raise StaleLayoutError(
        'likes-by-window: this store keeps the all-URL total in the url "" row (the old '
        "layout, where an empty url was counted twice); rebuild it with "
        "`logstream rebuild likes-by-window` and promote the new version"
    )


likes_by_window = View(
    name="likes-by-window",
    topics=("likes",),
    bucket_ms=MINUTE_MS,
    keys=_url_and_total,
    series=(URL_SERIES, ALL_SERIES),
    key_name="url",
    check_store=check_layout,
    description=f"Likes per minute, per URL (series {URL_SERIES}) and over all URLs "
    f"(series {ALL_SERIES}, url empty).",
)


def windows(
    store: ViewStore,
    size: str,
    url: str | None,
    since_ms: int,
    until_ms: int,
    limit: int,
    after_start_ms: int | None = None,
) -> list[dict[str, int]]:
    """Non-empty windows of `size` in [since, until), ascending, after the cursor; url
    None: the total over all URLs."""
    size_ms = WINDOW_SIZES[size]
    series, key = cell(url)
    rows = store.windows(series, key, size_ms, since_ms, until_ms, limit, after_start_ms)
    return [{"start": start, "end": start + size_ms, "count": count} for start, count in rows]
