"""View stores: where a view's event-time-bucketed counters and its offsets live together."""

from __future__ import annotations

from logstream.stores.base import (
    BucketRow,
    Counter,
    Flush,
    Position,
    Reset,
    SeriesKey,
    SkippedRange,
    StoreStats,
    Summary,
    TotalRow,
    ViewStore,
)
from logstream.stores.factory import drop_store, open_store, open_view_store

__all__ = [
    "BucketRow",
    "Counter",
    "Flush",
    "Position",
    "Reset",
    "SeriesKey",
    "SkippedRange",
    "StoreStats",
    "Summary",
    "TotalRow",
    "ViewStore",
    "drop_store",
    "open_store",
    "open_view_store",
]
