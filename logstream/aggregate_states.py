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
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

import orjson
from datasketches import hll_sketch, hll_union, tgt_hll_type

from logstream.aggregates import Aggregate, Kind
from logstream.stores.base import Counter

__all__ = [
    "Folder",
    "Latest",
    "answer",
    "canonical_sketch",
    "check_aggregates",
    "merge_all",
    "sketch_bytes",
    "spec_of",
    "union_all",
    "union_bytes",
]

Latest = tuple[int, int, int, str]
"""(event_ms, partition, offset, value JSON): the newest event's value and where it sits."""

_HLL_TYPE = tgt_hll_type.HLL_8
_HLL_PREAMBLE_HLL_MODE = 10  # preamble ints of a sketch in HLL (register) mode
_COUPON_PREAMBLES = (2, 3)  # LIST and SET modes: a preamble, then 4-byte coupons
_OUT_OF_ORDER_FLAG = 0x10
_COMPACT_FLAG = 0x08
_HLL_8_TARGET = 2  # bits 2-3 of the mode byte
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
    Canonical form of a compact HLL_8 sketch: the coupons of a LIST/SET-mode sketch sorted;
    in HLL mode marked out-of-order with a zero HIP accumulator, so that its estimate comes
    from the registers alone (the union's composite estimator). Anything else (another
    target type, an updatable image) first passes through a union to become one.
    Measured: equal value sets give equal bytes across insertion orders, batchings and
    nested unions, in every mode (tests/unit/test_aggregates.py).
    """
    if len(data) < 8 or data[7] >> 2 & 3 != _HLL_8_TARGET or not data[5] & _COMPACT_FLAG:
        union = hll_union(lg_k)
        union.update(hll_sketch.deserialize(data))
        data = union.get_result(_HLL_TYPE).serialize_compact()
    preamble = data[0]
    if preamble == _COUPON_PREAMBLES[0] and len(data) <= 12:
        return bytes(data)  # a LIST with at most one coupon: nothing to reorder
    out = bytearray(data)
    if preamble in _COUPON_PREAMBLES:
        start = preamble * 4
        n = (len(out) - start) // 4
        if n > 1:
            coupons = sorted(struct.unpack_from(f"<{n}I", out, start))
            struct.pack_into(f"<{n}I", out, start, *coupons)
    elif preamble == _HLL_PREAMBLE_HLL_MODE:
        out[5] |= _OUT_OF_ORDER_FLAG
        out[_HIP_ACCUM] = bytes(8)
    return bytes(out)


def sketch_bytes(sketch: hll_sketch, lg_k: int) -> bytes:
    """A sketch being folded, in its stored (canonical) form."""
    return canonical_sketch(sketch.serialize_compact(), lg_k)


def union_all(sketches: Iterable[bytes | None], lg_k: int) -> bytes | None:
    """Union of stored sketches (None: no values), canonical; one union for all of them."""
    present = [b for b in sketches if b is not None]
    if not present:
        return None
    first = present[0]
    if all(b == first for b in present):
        return first  # a union is idempotent: nothing to compute
    union = hll_union(lg_k)
    for b in present:
        union.update(hll_sketch.deserialize(b))
    return canonical_sketch(union.get_result(_HLL_TYPE).serialize_compact(), lg_k)


def union_bytes(a: bytes | None, b: bytes | None, lg_k: int) -> bytes | None:
    """Union of two stored sketches (None: no values), canonical."""
    return union_all((a, b), lg_k)


def merge_all(aggregates: Sequence[Aggregate], states: Sequence[Sequence[Any]]) -> list[Any]:
    """Stored-form states of several cells merged into one (associative, commutative:
    sum adds, min/max compare, latest keeps the largest (event_ms, partition, offset, JSON),
    distinct is one HLL union)."""
    if len(states) == 1:
        return list(states[0])
    out: list[Any] = []
    for i, agg in enumerate(aggregates):
        present = [s[i] for s in states if s[i] is not None]
        kind = agg.kind
        if kind is Kind.SUM:
            out.append(sum(present))
        elif kind is Kind.MIN:
            out.append(min(present) if present else None)
        elif kind in (Kind.MAX, Kind.LATEST):
            out.append(max(present) if present else None)
        else:
            out.append(union_all(present, agg.lg_k))
    return out


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
    """Folds events into their cells' aggregate states (the runtime's hot path).

    States while folding are as in the module docstring, except that a live `hll_sketch`
    stands for a distinct state and latest keeps the raw value (turned into JSON text only
    when it is stored; equal (event_ms, partition, offset) compare the JSON texts).
    `rows()` turns cells into bucket rows in stored form at flush time.

    `fold_event` is generated for the declared aggregates (one function, each field read
    once per event, no per-aggregate calls): at hundreds of thousands of events per second
    a generic loop over the aggregates costs more than the consume loop itself.
    """

    def __init__(self, aggregates: Sequence[Aggregate]) -> None:
        self.aggregates = check_aggregates(aggregates)
        self.fold_event: Callable[
            [dict[Any, Any], Iterable[Any], Mapping[str, Any], int, int, int], None
        ] = _generate_fold(self.aggregates)
        self.rows: RowBuilder = generate_row_builder(self.aggregates)

    def merge(self, cells: Sequence[Counter]) -> Counter:
        """Several cells with fold states merged into a new one (totals of a key's buckets)."""
        merged = Counter(
            sum(c.count for c in cells),
            min(c.first_ms for c in cells),
            max(c.last_ms for c in cells),
        )
        states = [c.aggs for c in cells if c.aggs is not None]
        if not states:
            return merged
        aggs: list[Any] = []
        for i, agg in enumerate(self.aggregates):
            present = [s[i] for s in states if s[i] is not None]
            kind = agg.kind
            if kind is Kind.SUM:
                aggs.append(sum(present))
            elif kind is Kind.MIN:
                aggs.append(min(present) if present else None)
            elif kind is Kind.MAX:
                aggs.append(max(present) if present else None)
            elif kind is Kind.LATEST:
                newest = None
                for v in present:
                    if newest is None or _newer_raw(newest, *v):
                        newest = v
                aggs.append(newest)
            elif not present:
                aggs.append(None)
            else:
                union = hll_union(agg.lg_k)
                for sketch in present:
                    union.update(sketch)
                aggs.append(union.get_result(_HLL_TYPE))
        merged.aggs = aggs
        return merged


RowBuilder = Callable[[Iterable[tuple[tuple[str, str, int], Counter]]], list[tuple[Any, ...]]]


def generate_row_builder(aggregates: tuple[Aggregate, ...]) -> RowBuilder:
    """A function turning (address, Counter) pairs with fold states into bucket rows in
    stored form: series, key, bucket_ms, count, first_ms, last_ms, then the columns of each
    aggregate as `logstream.stores.layout` lays them out. Generated, like `fold_event`:
    it runs once per cell and flush."""
    if not aggregates:
        return _count_rows
    names = [f"v{i}" for i in range(len(aggregates))]
    cols: list[str] = []
    for i, agg in enumerate(aggregates):
        v = names[i]
        if agg.kind is Kind.LATEST:
            cols += [f"None if {v} is None else {v}[{j}]" for j in range(3)]
            cols.append(f"None if {v} is None else _json({v}[3])")
        elif agg.kind is Kind.DISTINCT:
            cols.append(f"None if {v} is None else sketch_bytes({v}, {agg.lg_k})")
        else:
            cols.append(v)
    empty = [("0" if a.kind is Kind.SUM else "None") for a in aggregates]
    unpack = ", ".join(names) + ("," if len(names) == 1 else "")
    lines = [
        "def build(items):",
        "    out = []",
        "    append = out.append",
        "    for (series, key, bucket), c in items:",
        f"        {unpack} = c.aggs or ({', '.join(empty)},)",
        f"        append((series, key, bucket, c.count, c.first_ms, c.last_ms, {', '.join(cols)}))",
        "    return out",
    ]
    scope: dict[str, Any] = {"_json": _json, "sketch_bytes": sketch_bytes}
    exec(compile("\n".join(lines), "<logstream row builder>", "exec"), scope)
    return cast(RowBuilder, scope["build"])


def _count_rows(items: Iterable[tuple[tuple[str, str, int], Counter]]) -> list[tuple[Any, ...]]:
    return [(s, k, b, c.count, c.first_ms, c.last_ms) for (s, k, b), c in items]


def _newer_raw(cur: tuple[int, int, int, Any], ts: int, p: int, o: int, v: Any) -> bool:
    """Whether (ts, p, o, v) is newer than the folded latest `cur` (raw values)."""
    if (ts, p, o) != cur[:3]:
        return (ts, p, o) > cur[:3]
    return _json(v) > _json(cur[3])


_PLAIN = frozenset({str, int, float})
"""Value types a sketch hashes as they are; any other value is hashed as its JSON text."""


def _sketch_of(lg_k: int, v: str | int | float) -> hll_sketch:
    sketch = hll_sketch(lg_k, _HLL_TYPE)
    sketch.update(v)
    return sketch


def _generate_fold(
    aggregates: tuple[Aggregate, ...],
) -> Callable[[dict[Any, Any], Iterable[Any], Mapping[str, Any], int, int, int], None]:
    """The source of `fold_event` for these aggregates, compiled once per view."""
    fields = sorted({a.field for a in aggregates})
    var = {f: f"f{i}" for i, f in enumerate(fields)}
    lines = ["def fold_event(counters, keys, r, ts, p, o):"]
    lines += [f"    {var[f]} = r.get({f!r})" for f in fields]
    for f in sorted({a.field for a in aggregates if a.kind is Kind.DISTINCT}):
        v = var[f]  # what the sketch hashes, computed once per event
        lines.append(f"    h{v} = {v} if type({v}) in _PLAIN else _json({v})")
    initial = []
    for agg in aggregates:
        v = var[agg.field]
        if agg.kind is Kind.SUM:
            initial.append(f"0 if {v} is None else {v}")
        elif agg.kind in (Kind.MIN, Kind.MAX):
            initial.append(v)
        elif agg.kind is Kind.LATEST:
            initial.append(f"None if {v} is None else (ts, p, o, {v})")
        else:
            initial.append(f"None if {v} is None else _sketch_of({agg.lg_k}, h{v})")
    lines += [
        "    for key in keys:",
        "        c = counters.get(key)",
        "        if c is None:",
        f"            counters[key] = Counter(1, ts, ts, [{', '.join(initial)}])",
        "            continue",
        "        c.count += 1",
        "        if ts < c.first_ms:",
        "            c.first_ms = ts",
        "        elif ts > c.last_ms:",
        "            c.last_ms = ts",
        "        s = c.aggs",
    ]
    for i, agg in enumerate(aggregates):
        v = var[agg.field]
        lines.append(f"        if {v} is not None:")
        if agg.kind is Kind.SUM:
            lines.append(f"            s[{i}] += {v}")
        elif agg.kind is Kind.MIN:
            lines += [
                f"            if s[{i}] is None or {v} < s[{i}]:",
                f"                s[{i}] = {v}",
            ]
        elif agg.kind is Kind.MAX:
            lines += [
                f"            if s[{i}] is None or {v} > s[{i}]:",
                f"                s[{i}] = {v}",
            ]
        elif agg.kind is Kind.LATEST:
            lines += [
                f"            cur = s[{i}]",
                f"            if cur is None or ts > cur[0] or (ts == cur[0] and "
                f"_newer_raw(cur, ts, p, o, {v})):",
                f"                s[{i}] = (ts, p, o, {v})",
            ]
        else:
            lines += [
                f"            if s[{i}] is None:",
                f"                s[{i}] = _sketch_of({agg.lg_k}, h{v})",
                "            else:",
                f"                s[{i}].update(h{v})",
            ]
    scope: dict[str, Any] = {
        "Counter": Counter,
        "_newer_raw": _newer_raw,
        "_sketch_of": _sketch_of,
        "_PLAIN": _PLAIN,
        "_json": _json,
    }
    exec(compile("\n".join(lines), "<logstream fold_event>", "exec"), scope)
    return cast(
        Callable[[dict[Any, Any], Iterable[Any], Mapping[str, Any], int, int, int], None],
        scope["fold_event"],
    )
