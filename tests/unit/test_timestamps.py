"""`occurred_at` parsing: what is accepted, what is refused, and that refusals say why."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest_api.timestamps import InvalidTimestampError, parse_occurred_at

NOW = 1_714_564_800_000  # 2024-05-01T12:00:00Z
HOUR = 3_600_000


def parse(value: object, max_future_ms: int = HOUR) -> int:
    return parse_occurred_at(value, now=NOW, max_future_ms=max_future_ms)


@pytest.mark.parametrize(
    ("text", "millis"),
    [
        ("2024-05-01T12:00:00Z", NOW),
        ("2024-05-01T12:00:00z", NOW),
        ("2024-05-01t12:00:00Z", NOW),
        ("2024-05-01 12:00:00Z", NOW),
        ("2024-05-01T14:00:00+02:00", NOW),
        ("2024-05-01T07:30:00-04:30", NOW),
        ("2024-05-01T12:00:00.250Z", NOW + 250),
        ("2024-05-01T12:00:00.2Z", NOW + 200),
        ("2024-05-01T12:00:00.123999999Z", NOW + 123),  # truncated, not rounded
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T01:00:00+01:00", 0),
    ],
)
def test_rfc3339_strings(text, millis):
    assert parse(text) == millis


@pytest.mark.parametrize("millis", [0, 1, NOW, NOW + HOUR])
def test_epoch_millis(millis):
    assert parse(millis) == millis


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (True, "boolean"),
        (False, "boolean"),
        (1.5, "not a fraction"),
        (float(NOW), "not a fraction"),
        (None, "RFC 3339"),
        ([NOW], "RFC 3339"),
        ("1714564800000", "JSON number"),
        ("2024-05-01T12:00:00", "no UTC offset"),
        ("2024-05-01", "not an RFC 3339"),
        ("yesterday", "not an RFC 3339"),
        ("2024-05-01T12:00:00+0200", "not an RFC 3339"),
        ("2024-13-01T12:00:00Z", "not a valid date-time"),
        ("2024-02-30T12:00:00Z", "not a valid date-time"),
        ("2024-05-01T24:00:00Z", "not a valid date-time"),
        ("2024-05-01T12:00:00+24:00", "not a valid date-time"),
        ("2016-12-31T23:59:60Z", "not a valid date-time"),
        ("x" * 1000, "not an RFC 3339"),
        (-1, "before 1970"),
        ("1969-12-31T23:59:59.999Z", "before 1970"),
        ("0001-01-01T00:00:00+23:59", "before 1970"),
        (NOW + HOUR + 1, "in the future"),
        ("2024-05-01T13:00:00.001Z", "in the future"),
        ("9999-12-31T23:59:59Z", "in the future"),
        (10**30, "in the future"),
        (1e40, "out of range"),  # what orjson makes of a JSON integer beyond 64 bits
    ],
)
def test_refusals_say_why(value, says):
    with pytest.raises(InvalidTimestampError, match=says):
        parse(value)


def test_future_bound_is_the_setting():
    assert parse(NOW + 5, max_future_ms=5) == NOW + 5
    with pytest.raises(InvalidTimestampError, match="at most 0s ahead"):
        parse(NOW + 1, max_future_ms=0)


@given(st.integers(min_value=0, max_value=NOW + HOUR))
def test_every_millisecond_round_trips_through_rfc3339(millis):
    from datetime import UTC, datetime, timedelta

    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=millis)
    text = moment.isoformat(timespec="milliseconds")
    text = text.replace("+00:00", "Z")
    assert parse(text) == millis


@given(st.one_of(st.text(max_size=40), st.integers(), st.floats(), st.booleans(), st.none()))
def test_anything_else_parses_or_raises_our_error(value):
    try:
        result = parse(value)
    except InvalidTimestampError:
        return
    assert 0 <= result <= NOW + HOUR
