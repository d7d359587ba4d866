"""How each aggregate kind folds events into a bucket's state, merges states, and answers.

One state per declared aggregate, in declaration order, beside the bucket's count:

* sum: a number (0 before any value); merge: +. Exact for integer fields; a float field's
  sum is a double, so its last bits depend on the order of additions (docs/architecture.md).
* min / max: a number or None (no value yet); merge: the smaller / larger.
* latest: None or (event_ms, partition, offset, value as JSON text); merge: the larger
  tuple, i.e. the newest event, ties by log position, then by the JSON text.
* distinct: a DataSketches HLL sketch (an `hll_sketch` while folding, its canonical bytes
  once flushed, see `canonical_sketch`); merge: HLL union.

Null and missing field values are skipped by every kind (latest keeps the newest non-null
value). Every merge is associative, commutative and idempotent-free of order, which is what
lets a backfill drop and recompute any bucket and a rebuild reproduce the live store.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from datasketches import hll_sketch, hll_union, tgt_hll_type

from logstream.aggregates import Aggregate, Kind

__all__ = [
    "Folder",
    "Latest",
    "answer",
    "canonical_sketch",
    "check_aggregates",
    "merge_cells",
    "sketch_bytes",
    "spec_of",
]

Latest = tuple[int, int, int, str]
"""(event_ms, partition, offset, value JSON): the newest event's value and where it sits."""

_HLL_TYPE = tgt_hll_type.HLL_8
_HLL_PREAMBLE_HLL_MODE = 10  # preamble ints of a sketch in HLL (register) mode
_COUPON_PREAMBLES = (2, 3)  # LIST and SET modes: a preamble, then 4-byte coupons
_OUT_OF_ORDER_FLAG = 0x10
_HIP_ACCUM = slice(8, 16)


def check_aggregates(aggregates: Sequence[Aggregate]) -> tuple[Aggregate, ...]:
    """The aggregates as a tuple, refusing two with one name (their answers would clash)."""
    names = [a.name for a in aggregates]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"aggregate names must be unique within a view: {duplicated}")
    return tuple(aggregates)


def spec_of(aggregates: Sequence[Aggregate]) -> list[list[Any]]:
    """What a store records of the aggregates it holds (compared on every open)."""
    return [
        [a.name, str(a.kind), a.field, a.lg_k if a.kind is Kind.DISTINCT else None]
        for a in aggregates
    ]


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def canonical_sketch(data: bytes, lg_k: int) -> bytes:
    """The one serialized form of an HLL sketch's content, whatever built it.

    DataSketches' serialization depends on insertion order and batching (measured: the
    coupons of a small sketch are kept in arrival order, and a sketch built in one stream
    carries an order-dependent HIP accumulator), so equal contents are not equal bytes.
    Canonical form: pass through a union (HLL_8), sort the coupons of a LIST/SET-mode
    sketch, and in HLL mode mark it out-of-order with a zero HIP accumulator, so its
    estimate comes from the registers alone (the union's composite estimator).
    """
    union = hll_union(lg_k)
    union.update(hll_sketch.deserialize(data))
    out = bytearray(union.get_result(_HLL_TYPE).serialize_compact())
    preamble = out[0]
    if preamble in _COUPON_PREAMBLES:
        start = preamble * 4
        n = (len(out) - start) // 4
        coupons = sorted(struct.unpack_from(f"<{n}I", out, start))
        struct.pack_into(f"<{n}I", out, start, *coupons)
    elif preamble == _HLL_PREAMBLE_HLL_MODE:
        out[5] |= _OUT_OF_ORDER_FLAG
        out[_HIP_ACCUM] = bytes(8)
    return bytes(out)


def sketch_bytes(sketch: hll_sketch, lg_k: int) -> bytes:
    """A sketch being folded, in its stored (canonical) form."""
    return canonical_sketch(sketch.serialize_compact(), lg_k)


def union_bytes(a: bytes | None, b: bytes | None, lg_k: int) -> bytes | None:
    """Union of two stored sketches (None: no values), canonical."""
    if a is None or a == b:
        return b
    if b is None:
        return a
    union = hll_union(lg_k)
    union.update(hll_sketch.deserialize(a))
    union.update(hll_sketch.deserialize(b))
    return canonical_sketch(union.get_result(_HLL_TYPE).serialize_compact(), lg_k)


def _newer(a: Latest | None, b: Latest | None) -> Latest | None:
    if a is None:
        return b
    if b is None:
        return a
    return b if b > a else a


def merge_cells(aggregates: Sequence[Aggregate], acc: list[Any], other: Sequence[Any]) -> None:
    """Merge stored-form states `other` into `acc` (one per aggregate), in place."""
    for i, agg in enumerate(aggregates):
        a, b = acc[i], other[i]
        kind = agg.kind
        if kind is Kind.SUM:
            acc[i] = (a or 0) + (b or 0)
        elif kind is Kind.MIN:
            acc[i] = b if a is None else a if b is None else min(a, b)
        elif kind is Kind.MAX:
            acc[i] = b if a is None else a if b is None else max(a, b)
        elif kind is Kind.LATEST:
            acc[i] = _newer(a, b)
        else:
            acc[i] = union_bytes(a, b, agg.lg_k)


def answer(aggregates: Sequence[Aggregate], states: Sequence[Any]) -> dict[str, Any]:
    """The query answer of each aggregate from its stored-form state (see `Summary`)."""
    values: dict[str, Any] = {}
    for agg, state in zip(aggregates, states, strict=True):
        kind = agg.kind
        if kind is Kind.SUM:
            values[agg.name] = state or 0
        elif kind in (Kind.MIN, Kind.MAX):
            values[agg.name] = state
        elif kind is Kind.LATEST:
            values[agg.name] = None if state is None else orjson.loads(state[3])
        else:
            values[agg.name] = (
                0 if state is None else round(hll_sketch.deserialize(state).get_estimate())
            )
    return values


class Folder:
    """Folds one event's fields into a bucket's aggregate states (the runtime's hot path).

    States while folding: as in the module docstring, with a live `hll_sketch` for distinct;
    `stored()` turns them into the stored form at flush time.
    """

    def __init__(self, aggregates: Sequence[Aggregate]) -> None:
        self.aggregates = check_aggregates(aggregates)
        self._steps: list[Callable[[list[Any], Mapping[str, Any], int, int, int], None]] = [
            self._step(i, agg) for i, agg in enumerate(self.aggregates)
        ]

    def new(self, record: Mapping[str, Any], ts: int, partition: int, offset: int) -> list[Any]:
        """The states of a bucket's first event."""
        state = self.empty()
        self.fold(state, record, ts, partition, offset)
        return state

    def empty(self) -> list[Any]:
        return [0 if a.kind is Kind.SUM else None for a in self.aggregates]

    def fold(
        self, state: list[Any], record: Mapping[str, Any], ts: int, partition: int, offset: int
    ) -> None:
        """Add one event to `state`, in place."""
        for step in self._steps:
            step(state, record, ts, partition, offset)

    def stored(self, state: Sequence[Any]) -> list[Any]:
        """States in stored form (sketches as canonical bytes)."""
        out = list(state)
        for i, agg in enumerate(self.aggregates):
            if agg.kind is Kind.DISTINCT and out[i] is not None:
                out[i] = sketch_bytes(out[i], agg.lg_k)
        return out

    @staticmethod
    def _step(
        i: int, agg: Aggregate
    ) -> Callable[[list[Any], Mapping[str, Any], int, int, int], None]:
        name = agg.field
        kind = agg.kind

        if kind is Kind.SUM:

            def step(s: list[Any], r: Mapping[str, Any], ts: int, p: int, o: int) -> None:
                v = r.get(name)
                if v is not None:
                    s[i] += v

        elif kind is Kind.MIN:

            def step(s: list[Any], r: Mapping[str, Any], ts: int, p: int, o: int) -> None:
                v = r.get(name)
                if v is not None and (s[i] is None or v < s[i]):
                    s[i] = v

        elif kind is Kind.MAX:

            def step(s: list[Any], r: Mapping[str, Any], ts: int, p: int, o: int) -> None:
                v = r.get(name)
                if v is not None and (s[i] is None or v > s[i]):
                    s[i] = v

        elif kind is Kind.LATEST:

            def step(s: list[Any], r: Mapping[str, Any], ts: int, p: int, o: int) -> None:
                v = r.get(name)
                if v is not None:
                    s[i] = _newer(s[i], (ts, p, o, _json(v)))

        else:
            lg_k = agg.lg_k

            def step(s: list[Any], r: Mapping[str, Any], ts: int, p: int, o: int) -> None:
                v = r.get(name)
                if v is not None:
                    sketch = s[i]
                    if sketch is None:
                        sketch = s[i] = hll_sketch(lg_k, _HLL_TYPE)
                    sketch.update(v if isinstance(v, (str, int, float)) else _json(v))

        return step
