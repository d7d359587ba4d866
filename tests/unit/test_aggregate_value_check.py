"""The per-event check that sum/min/max fields are null or finite numbers (one field and
several: the one-field case is a separate fast path)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from logstream.aggregates import distinct, latest, max_of, sum_of
from logstream.runtime.view_output import ViewOutputError, aggregate_value_check

GOOD = [None, 0, -3, 2**70, 0.0, -0.0, 1.5, -1e308, 5e-324]
BAD = [math.inf, -math.inf, math.nan, "1", True, b"1", [1], {"x": 1}]


def _ok(value: Any) -> bool:
    """Independent statement of the rule: null, an int (not a bool), or a finite float."""
    return value is None or type(value) is int or (type(value) is float and math.isfinite(value))


@pytest.mark.parametrize(
    "aggregates",
    [
        (sum_of("x"), distinct("u"), latest("r")),
        (sum_of("x"), max_of("y"), distinct("u")),
    ],
    ids=["one numeric field", "two numeric fields"],
)
def test_finite_numbers_and_nulls_pass_anything_else_names_the_field(
    aggregates: tuple[Any, ...],
) -> None:
    check = aggregate_value_check(aggregates)
    assert check is not None
    for value in GOOD + BAD:
        record = {"x": value, "y": 1, "u": "text is fine here", "r": math.inf}
        if _ok(value):
            check(record)
        else:
            with pytest.raises(ViewOutputError, match="field 'x'"):
                check(record)
    check({"u": "x missing is null"})
    if any(a.field == "y" for a in aggregates):
        with pytest.raises(ViewOutputError, match=r"field 'y'.*not a finite number"):
            check({"x": 1, "y": math.nan})


def test_no_numeric_aggregate_no_check() -> None:
    assert aggregate_value_check((distinct("u"), latest("r"))) is None
