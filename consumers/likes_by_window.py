"""likes-by-window: tumbling-window counts per URL and in total.

Only 1-minute buckets are stored; 1-hour and 1-day windows are sums of them at query time
(epoch-aligned, so every larger window is a whole number of minutes). That keeps two
counter updates per event instead of six, and a backfill can cut at any minute.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from logstream.view import DAY_MS, HOUR_MS, MINUTE_MS, View

__all__ = ["ALL_URLS", "WINDOW_SIZES", "LikesByWindow"]

ALL_URLS = ""  # the key of the total over all URLs
WINDOW_SIZES = {"1m": MINUTE_MS, "1h": HOUR_MS, "1d": DAY_MS}


class LikesByWindow(View):
    name = "likes-by-window"
    topics = ("likes",)
    bucket_ms = MINUTE_MS

    def keys(self, event: Mapping[str, Any], event_ms: int) -> list[tuple[str, str, int]]:
        minute = event_ms - event_ms % MINUTE_MS
        return [("w", event["url"], minute), ("w", ALL_URLS, minute)]
