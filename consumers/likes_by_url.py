"""likes-by-url: likes per URL with first and last event time, in hourly buckets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from consumers.answers import totals_answer
from logstream.stores.base import ViewStore
from logstream.view import HOUR_MS, View

__all__ = ["LikesByUrl"]


class LikesByUrl(View):
    name = "likes-by-url"
    topics = ("likes",)
    bucket_ms = HOUR_MS
    totals_series = frozenset({"url"})
    time_index = True  # top?since&until sums the buckets of a time range

    def keys(self, event: Mapping[str, Any], event_ms: int) -> list[tuple[str, str, int]]:
        return [("url", event["url"], event_ms - event_ms % HOUR_MS)]

    def lookup(self, store: ViewStore, url: str) -> dict[str, Any]:
        """Likes of one URL (count 0 and no times for a URL never liked)."""
        counter = store.total("url", url)
        return totals_answer("url", url, counter)

    def top(
        self, store: ViewStore, limit: int, since_ms: int | None = None, until_ms: int | None = None
    ) -> list[dict[str, Any]]:
        """URLs ranked by likes (ties by URL); a range is applied on hourly buckets."""
        return [
            {"url": url, "count": count}
            for url, count in store.top("url", limit, since_ms, until_ms)
        ]
