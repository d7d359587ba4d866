"""Checks on what a view's code hands the runtime, made before any cell is touched.

A key function may return a key that is not text, an unhashable key, a series the view did
not declare or a bucket that is not a whole number of ms; an aggregate field may hold text
where `sum_of` needs a number. Unchecked, these either crash the loop with a raw TypeError
or reach the store, which rejects the flush (or concatenates text "sums"). Checked here, they
are view-code errors like any exception of the view's own code: the view's `on_error`
policy applies (stop at the event's offset, or dead-letter it), and no cell is half updated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from logstream.aggregates import Aggregate, Kind
from logstream.view import View

__all__ = ["ViewOutputError", "aggregate_value_check", "key_check"]

NUMERIC_KINDS = frozenset({Kind.SUM, Kind.MIN, Kind.MAX})


class ViewOutputError(TypeError):
    """A key or an aggregate field value the view's code produced that no store can keep."""


def key_check(view: View) -> Callable[[Sequence[Any]], None] | None:
    """A check of the cells `view.keys` returns, or None when they need none (a field key:
    the declaration builds its cells itself, as (series, text, aligned bucket))."""
    if getattr(view, "_key_field", None) is not None and type(view).keys is View.keys:
        return None
    declared = frozenset(view.series)
    bucket_ms = view.bucket_ms
    tuple_, str_, int_ = tuple, str, int

    def explain(cell: Any) -> ViewOutputError:
        """The first thing wrong with `cell` (the slow path, once per bad event)."""
        if cell.__class__ is not tuple or len(cell) != 3:
            return ViewOutputError(
                f"keys must be (series, key, bucket_start_ms) tuples, not {_show(cell)}"
            )
        series, key, bucket = cell
        if series.__class__ is not str or (declared and series not in declared):
            return ViewOutputError(
                f"series {_show(series)} is not one the view declares "
                f"({', '.join(sorted(declared)) or 'any text'})"
            )
        if key.__class__ is not str:
            return ViewOutputError(f"key {_show(key)} is not text (str)")
        return ViewOutputError(
            f"bucket {_show(bucket)} is not a whole ms multiple of bucket_ms={bucket_ms}"
        )

    def check(cells: Sequence[Any]) -> None:
        # One boolean expression per cell: this runs for every event of a keys= view.
        for cell in cells:
            try:
                if (
                    cell.__class__ is tuple_
                    and len(cell) == 3
                    and cell[1].__class__ is str_
                    and cell[2].__class__ is int_
                    and not cell[2] % bucket_ms
                    and (cell[0] in declared if declared else cell[0].__class__ is str_)
                ):
                    continue
            except TypeError:  # e.g. an unhashable series
                pass
            raise explain(cell)

    return check


def aggregate_value_check(
    aggregates: Sequence[Aggregate],
) -> Callable[[Mapping[str, Any]], None] | None:
    """A check that every field `sum_of`/`min_of`/`max_of` reads is null or a finite number
    (int or float; a bool is not a number), or None when the view has no such aggregate."""
    numeric = [a for a in aggregates if a.kind in NUMERIC_KINDS]
    if not numeric:
        return None
    fields = tuple(sorted({a.field for a in numeric}))
    users = {
        f: ", ".join(f"{a.kind}_of {a.name!r}" for a in numeric if a.field == f) for f in fields
    }

    def fail(name: str, value: Any) -> None:
        raise ViewOutputError(
            f"field {name!r} ({users[name]}) is {type(value).__name__} {_show(value)}, "
            "not a finite number (int or float)"
        )

    # It runs once per event: `v - v == 0.0` is math.isfinite without a call, and the
    # one-field case (the usual) has no loop.
    if len(fields) == 1:
        (only,) = fields

        def check_one(record: Mapping[str, Any]) -> None:
            value = record.get(only)
            if value is None or value.__class__ is int:
                return
            if value.__class__ is float and value - value == 0.0:
                return
            fail(only, value)

        return check_one

    def check(record: Mapping[str, Any]) -> None:
        for name in fields:
            value = record.get(name)
            if value is None or value.__class__ is int:
                continue
            if value.__class__ is float and value - value == 0.0:
                continue
            fail(name, value)

    return check


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
