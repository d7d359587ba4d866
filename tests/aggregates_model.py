"""An independent, from-scratch computation of aggregates over plain events, for tests.

It shares nothing with the runtime's folding or the stores' merging: plain Python sums,
min/max over lists, latest by sorting, and distinct as an exact set (plus the HLL sketch of
that whole set built in one go, which the stored sketch must equal byte for byte).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from datasketches import hll_sketch, tgt_hll_type

from logstream.aggregate_states import canonical_sketch
from logstream.aggregates import Aggregate, Kind


@dataclass(frozen=True)
class Ev:
    """One applied event: its time, log position and decoded record."""

    ts: int
    partition: int
    offset: int
    record: dict[str, Any]


def sketch_of(values: Iterable[Any], lg_k: int) -> bytes | None:
    """The canonical sketch of a set of values built in one go (None: no values)."""
    sketch = hll_sketch(lg_k, tgt_hll_type.HLL_8)
    seen = False
    for v in values:
        sketch.update(v)
        seen = True
    return canonical_sketch(sketch.serialize_compact(), lg_k) if seen else None


def cell_of(aggregates: tuple[Aggregate, ...], events: list[Ev]) -> dict[str, Any]:
    """count, first_ms, last_ms and per aggregate {value, and for distinct the exact set}."""
    out: dict[str, Any] = {
        "count": len(events),
        "first_ms": min(e.ts for e in events),
        "last_ms": max(e.ts for e in events),
    }
    for agg in aggregates:
        values = [e.record.get(agg.field) for e in events]
        present = [v for v in values if v is not None]
        if agg.kind is Kind.SUM:
            out[agg.name] = sum(present)
        elif agg.kind is Kind.MIN:
            out[agg.name] = min(present) if present else None
        elif agg.kind is Kind.MAX:
            out[agg.name] = max(present) if present else None
        elif agg.kind is Kind.LATEST:
            with_value = [e for e in events if e.record.get(agg.field) is not None]
            newest = max(with_value, key=lambda e: (e.ts, e.partition, e.offset), default=None)
            out[agg.name] = None if newest is None else newest.record[agg.field]
        else:
            exact = set(present)
            out[agg.name] = len(exact)
            out[agg.name + ":sketch"] = sketch_of(sorted(exact, key=repr), agg.lg_k)
    return out


def expected_cells(
    aggregates: tuple[Aggregate, ...],
    events: Iterable[Ev],
    keys: Callable[[Ev], Iterable[tuple[str, str, int]]],
    group: Callable[[tuple[str, str, int]], Any] = lambda k: k,
) -> dict[Any, dict[str, Any]]:
    """Cells keyed by group(series, key, bucket), computed from scratch."""
    grouped: dict[Any, list[Ev]] = {}
    for e in events:
        for k in keys(e):
            grouped.setdefault(group(k), []).append(e)
    return {g: cell_of(aggregates, evs) for g, evs in grouped.items()}
