"""What a view may keep per (series, key, bucket) besides its count: the aggregate kinds.

Every bucket always keeps `count` with the first and last event time. A view declares any
number of further aggregates; each kind is mergeable per event-time bucket (associative and
commutative, ties broken deterministically), so a backfill from any datetime stays exact and
a rebuild reproduces the live result whatever the batching. See docs/architecture.md.

This module only declares them; the runtime folds events into them and the stores keep them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "DEFAULT_HLL_LG_K",
    "Aggregate",
    "Kind",
    "distinct",
    "latest",
    "max_of",
    "min_of",
    "sum_of",
]

DEFAULT_HLL_LG_K = 12  # 4,096 registers: relative standard error 1.04/sqrt(4096) ~ 1.6 %

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
# Answer fields every view already has: an aggregate may not take their names.
_RESERVED = frozenset({"count", "first_at", "last_at", "first_ms", "last_ms", "key", "freshness"})


class Kind(StrEnum):
    """How values of one event field combine within a bucket."""

    SUM = "sum"  # numeric total; null values are skipped
    MIN = "min"  # smallest numeric value; null when every value was null
    MAX = "max"  # largest numeric value
    LATEST = "latest"  # value of the newest event: max (event_ms, partition, offset)
    DISTINCT = "distinct"  # HyperLogLog sketch of the values' distinct count


@dataclass(frozen=True)
class Aggregate:
    """One declared aggregate: answers as `name`, reads event field `field`."""

    name: str
    kind: Kind
    field: str
    lg_k: int = DEFAULT_HLL_LG_K  # HLL precision (DISTINCT only)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name) or self.name in _RESERVED:
            raise ValueError(
                f"aggregate name {self.name!r} must match {_NAME.pattern} and not be one of "
                f"{sorted(_RESERVED)}"
            )
        if not self.field:
            raise ValueError(f"aggregate {self.name!r} needs the event field it reads")
        if self.kind is Kind.DISTINCT and not 4 <= self.lg_k <= 21:
            raise ValueError(f"aggregate {self.name!r}: lg_k must be within 4..21")


def sum_of(field: str, name: str | None = None) -> Aggregate:
    """Sum of a numeric field per bucket."""
    return Aggregate(name or f"{field}_sum", Kind.SUM, field)


def min_of(field: str, name: str | None = None) -> Aggregate:
    """Smallest value of a numeric field per bucket."""
    return Aggregate(name or f"{field}_min", Kind.MIN, field)


def max_of(field: str, name: str | None = None) -> Aggregate:
    """Largest value of a numeric field per bucket."""
    return Aggregate(name or f"{field}_max", Kind.MAX, field)


def latest(field: str, name: str | None = None) -> Aggregate:
    """The field's value in the newest event (by event time, ties by log position)."""
    return Aggregate(name or f"latest_{field}", Kind.LATEST, field)


def distinct(field: str, name: str | None = None, lg_k: int = DEFAULT_HLL_LG_K) -> Aggregate:
    """Approximate distinct count of a field's values (HyperLogLog, DataSketches)."""
    return Aggregate(name or f"distinct_{field}", Kind.DISTINCT, field, lg_k)
