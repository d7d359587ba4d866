"""likes-by-user: likes per user with first and last event time, in hourly buckets.

No totals table: nobody asks for a ranking of users, users have few likes each, and a
lookup sums one user's buckets (a primary-key range). That halves the writes per event.
"""

from __future__ import annotations

from typing import Any

from consumers.answers import totals_answer
from logstream.stores.base import ViewStore
from logstream.view import HOUR_MS, View

__all__ = ["likes_by_user", "lookup"]

likes_by_user = View(
    name="likes-by-user",
    topics=("likes",),
    bucket_ms=HOUR_MS,
    key="user_id",
    series="user",  # the series name its stores have always used
    description="Likes given per user, with first and last event time.",
)


def lookup(store: ViewStore, user_id: str) -> dict[str, Any]:
    """Likes given by one user (count 0 for an unknown user)."""
    return totals_answer("user_id", user_id, store.total("user", user_id))
