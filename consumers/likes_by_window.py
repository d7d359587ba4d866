"""likes-by-window: tumbling-window counts per URL and in total.

Only 1-minute buckets are stored; 1-hour and 1-day windows are sums of them at query time
(epoch-aligned, so every larger window is a whole number of minutes). That keeps two
counter updates per event instead of six, and a backfill can cut at any minute.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from logstream.stores.base import ViewStore
from logstream.view import DAY_MS, HOUR_MS, MINUTE_MS, View

__all__ = ["ALL_URLS", "WINDOW_SIZES", "likes_by_window", "windows"]

ALL_URLS = ""  # the key of the total over all URLs
WINDOW_SIZES = {"1m": MINUTE_MS, "1h": HOUR_MS, "1d": DAY_MS}


def _url_and_total(event: Mapping[str, Any], event_ms: int) -> list[tuple[str, str, int]]:
    """The URL's minute and the all-URL total's minute (`keys=`: the hot path of the
    busiest built-in, called as it is)."""
    minute = event_ms - event_ms % MINUTE_MS
    return [("w", event["url"], minute), ("w", ALL_URLS, minute)]


likes_by_window = View(
    name="likes-by-window",
    topics=("likes",),
    bucket_ms=MINUTE_MS,
    keys=_url_and_total,
    series=("w",),
    key_name="url",
    description="Likes per minute, per URL and (url empty) over all URLs.",
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
    """Non-empty windows of `size` in [since, until), ascending, after the cursor."""
    size_ms = WINDOW_SIZES[size]
    rows = store.windows("w", url or ALL_URLS, size_ms, since_ms, until_ms, limit, after_start_ms)
    return [{"start": start, "end": start + size_ms, "count": count} for start, count in rows]
