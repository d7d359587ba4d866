"""likes-by-user: likes per user with first and last event time, in hourly buckets.

No totals table: nobody asks for a ranking of users, users have few likes each, and a
lookup sums one user's buckets (a primary-key range). That halves the writes per event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from consumers.answers import totals_answer
from logstream.stores.base import ViewStore
from logstream.view import HOUR_MS, View

__all__ = ["LikesByUser"]


class LikesByUser(View):
    name = "likes-by-user"
    topics = ("likes",)
    bucket_ms = HOUR_MS
    totals_series = frozenset()

    def keys(self, event: Mapping[str, Any], event_ms: int) -> list[tuple[str, str, int]]:
        return [("user", event["user_id"], event_ms - event_ms % HOUR_MS)]

    def lookup(self, store: ViewStore, user_id: str) -> dict[str, Any]:
        """Likes given by one user (count 0 for an unknown user)."""
        return totals_answer("user_id", user_id, store.total("user", user_id))
