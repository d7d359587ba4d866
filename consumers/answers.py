"""Answer shapes shared by views."""

from __future__ import annotations

from typing import Any

from logstream.stores.base import Counter

__all__ = ["totals_answer"]


def totals_answer(field: str, key: str, counter: Counter | None) -> dict[str, Any]:
    """`{field: key, count, first_ms, last_ms}`; zero and None when the key has no events."""
    if counter is None:
        return {field: key, "count": 0, "first_ms": None, "last_ms": None}
    return {
        field: key,
        "count": counter.count,
        "first_ms": counter.first_ms,
        "last_ms": counter.last_ms,
    }
