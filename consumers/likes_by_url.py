"""likes-by-url: likes per URL with first and last event time, in hourly buckets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from logstream.view import HOUR_MS, View

__all__ = ["LikesByUrl"]


class LikesByUrl(View):
    name = "likes-by-url"
    topics = ("likes",)
    bucket_ms = HOUR_MS
    totals_series = frozenset({"url"})

    def keys(self, event: Mapping[str, Any], event_ms: int) -> list[tuple[str, str, int]]:
        return [("url", event["url"], event_ms - event_ms % HOUR_MS)]
