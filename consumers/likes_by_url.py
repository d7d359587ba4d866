"""likes-by-url: likes per URL with first and last event time, in hourly buckets."""

from __future__ import annotations

from typing import Any

from consumers.answers import totals_answer
from logstream.stores.base import ViewStore
from logstream.view import HOUR_MS, View

__all__ = ["likes_by_url", "lookup", "top"]

likes_by_url = View(
    name="likes-by-url",
    topics=("likes",),
    bucket_ms=HOUR_MS,
    key="url",
    totals=True,
    time_index=True,  # top?since&until sums the buckets of a time range
    description="Likes per URL, with first and last event time.",
)


def lookup(store: ViewStore, url: str) -> dict[str, Any]:
    """Likes of one URL (count 0 and no times for a URL never liked)."""
    return totals_answer("url", url, store.total("url", url))


def top(
    store: ViewStore, limit: int, since_ms: int | None = None, until_ms: int | None = None
) -> list[dict[str, Any]]:
    """URLs ranked by likes (ties by URL); a range is applied on hourly buckets."""
    return [
        {"url": url, "count": count} for url, count in store.top("url", limit, since_ms, until_ms)
    ]
