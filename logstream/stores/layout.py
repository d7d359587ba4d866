"""The v3 table layout of a view store: which columns each declared aggregate adds, how they
merge on upsert, and how stored rows turn back into aggregate states.

Columns are numbered by declaration (`a0`, `a1`, ...), never named after the aggregate, so no
declared name can clash with another column or an SQL keyword; the store records the
declaration in its meta and refuses to be opened with another one.

| kind     | columns                                   | merge on upsert                      |
|----------|-------------------------------------------|--------------------------------------|
| sum      | aN number, 0 when no value                | aN + excluded.aN                     |
| min/max  | aN number or NULL                         | least/greatest, NULL-skipping        |
| latest   | aN_ms, aN_p, aN_o, aN (value JSON text)   | the row (ms, p, o, value) that is larger |
| distinct | aN sketch bytes or NULL                   | HLL union, in Python (see sql.py)    |
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from logstream.aggregates import Aggregate, Kind

__all__ = ["Column", "Layout"]


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # abstract: "number", "bigint", "int", "text", "blob"
    not_null_default: str | None = None


@dataclass(frozen=True)
class Layout:
    """The aggregate columns of one view, shared by its buckets and totals tables."""

    aggregates: tuple[Aggregate, ...]

    @property
    def columns(self) -> list[Column]:
        out: list[Column] = []
        for i, agg in enumerate(self.aggregates):
            col = f"a{i}"
            if agg.kind is Kind.SUM:
                out.append(Column(col, "number", "0"))
            elif agg.kind in (Kind.MIN, Kind.MAX):
                out.append(Column(col, "number"))
            elif agg.kind is Kind.LATEST:
                out += [
                    Column(f"{col}_ms", "bigint"),
                    Column(f"{col}_p", "int"),
                    Column(f"{col}_o", "bigint"),
                    Column(col, "key"),  # compared as bytes (COLLATE "C")
                ]
            else:
                out.append(Column(col, "blob"))
        return out

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def distinct(self) -> list[tuple[int, str, int]]:
        """(aggregate index, column, lg_k) of every distinct aggregate."""
        return [
            (i, f"a{i}", a.lg_k) for i, a in enumerate(self.aggregates) if a.kind is Kind.DISTINCT
        ]

    def merge_sets(self, table: str, least: str, greatest: str) -> list[str]:
        """SET clauses merging `excluded` into the row of `table` (an upsert's DO UPDATE).

        Distinct columns keep the stored sketch (filled in when there is none): the union is
        done afterwards in Python, on the rows the upsert returns."""
        sets: list[str] = []
        for i, agg in enumerate(self.aggregates):
            c = f"a{i}"
            old, new = f"{table}.{c}", f"excluded.{c}"
            if agg.kind is Kind.SUM:
                sets.append(f"{c} = {old} + {new}")
            elif agg.kind is Kind.MIN:
                sets.append(f"{c} = coalesce({least}({old}, {new}), {old}, {new})")
            elif agg.kind is Kind.MAX:
                sets.append(f"{c} = coalesce({greatest}({old}, {new}), {old}, {new})")
            elif agg.kind is Kind.LATEST:
                parts = [f"{c}_ms", f"{c}_p", f"{c}_o", c]
                olds = ", ".join(f"{table}.{p}" for p in parts)
                news = ", ".join(f"excluded.{p}" for p in parts)
                newer = (
                    f"excluded.{c}_ms IS NOT NULL AND ({table}.{c}_ms IS NULL "
                    f"OR ({news}) > ({olds}))"
                )
                sets += [
                    f"{p} = CASE WHEN {newer} THEN excluded.{p} ELSE {table}.{p} END" for p in parts
                ]
            else:
                sets.append(f"{c} = coalesce({old}, {new})")
        return sets

    def recompute_selects(self) -> list[str]:
        """Per column, its value over a key's remaining buckets `b` (a GROUP BY select list);
        NULL for latest and distinct, which are recomputed separately."""
        out: list[str] = []
        for i, agg in enumerate(self.aggregates):
            c = f"b.a{i}"
            if agg.kind is Kind.SUM:
                out.append(f"sum({c})")
            elif agg.kind is Kind.MIN:
                out.append(f"min({c})")
            elif agg.kind is Kind.MAX:
                out.append(f"max({c})")
            elif agg.kind is Kind.LATEST:
                out += ["NULL", "NULL", "NULL", "NULL"]
            else:
                out.append("NULL")
        return out

    def latest_columns(self) -> list[list[str]]:
        return [
            [f"a{i}_ms", f"a{i}_p", f"a{i}_o", f"a{i}"]
            for i, a in enumerate(self.aggregates)
            if a.kind is Kind.LATEST
        ]

    def encode(self, states: Sequence[Any]) -> list[Any]:
        """Stored-form states as column values."""
        out: list[Any] = []
        for agg, state in zip(self.aggregates, states, strict=True):
            if agg.kind is Kind.LATEST:
                out += [None, None, None, None] if state is None else list(state)
            else:
                out.append(state)
        return out

    def decode(self, values: Sequence[Any], number: Any) -> list[Any]:
        """Column values (as read) as stored-form states; `number` converts driver numbers."""
        states: list[Any] = []
        i = 0
        for agg in self.aggregates:
            if agg.kind is Kind.LATEST:
                ms, p, o, v = values[i : i + 4]
                states.append(None if ms is None else (int(ms), int(p), int(o), str(v)))
                i += 4
            elif agg.kind is Kind.DISTINCT:
                v = values[i]
                states.append(None if v is None else bytes(v))
                i += 1
            else:
                v = values[i]
                states.append(None if v is None else number(v))
                i += 1
        return states
