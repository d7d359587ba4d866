"""Query-string parsing for the read API: times, durations and read-your-writes targets.

Times are RFC 3339 or epoch milliseconds, as at ingest; every error names its parameter.
"""

from __future__ import annotations

import re

from ingest_api.errors import ApiError
from ingest_api.models import FieldError
from ingest_api.timestamps import InvalidTimestampError, parse_occurred_at

__all__ = [
    "MAX_QUERY_TIME_MS",
    "MAX_TIME_MS",
    "MAX_WAIT_MS",
    "MAX_WINDOW_MS",
    "bad_param",
    "parse_duration_param",
    "parse_time_param",
    "parse_wait_for",
    "whole_number",
]

_NO_FUTURE_BOUND = 10**15
MAX_TIME_MS = _NO_FUTURE_BOUND  # times, cursors and window sizes stay far inside int64
# The latest time a query may name: answers print times (and ranges widened to whole
# buckets or windows) in RFC 3339, whose years end at 9999; 9998-01-01 leaves room for a
# widening by up to MAX_WINDOW_MS.
MAX_QUERY_TIME_MS = 253_339_228_800_000
MAX_WINDOW_MS = 366 * 86_400_000
MAX_WAIT_MS = 3_600_000  # the server caps a wait far lower (LOGSTREAM_READ_WAIT_MAX_S)
_DURATION = re.compile(r"^([1-9][0-9]{0,12})(ms|s|m|h|d)?$")
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1}


def bad_param(name: str, message: str) -> ApiError:
    return ApiError(
        422, "invalid_parameter", f"{name}: {message}", [FieldError(field=name, message=message)]
    )


def _is_ascii_digits(value: str) -> bool:
    """Only 0-9: not "²" or "٣", which str.isdigit takes too."""
    return value.isascii() and value.isdigit()


def parse_time_param(name: str, value: str | None) -> int | None:
    """Epoch ms from `2024-05-01T12:00:00Z` or `1714564800000`; None when absent."""
    if value is None:
        return None
    raw: object = value
    if _is_ascii_digits(value):
        if len(value) > 16:  # also keeps int() far from its 4,300-digit refusal
            raise bad_param(name, f"{value[:20]}... is out of range (epoch ms up to year 9999)")
        raw = int(value)
    try:
        ms = parse_occurred_at(raw, now=0, max_future_ms=_NO_FUTURE_BOUND)
    except InvalidTimestampError as exc:
        raise bad_param(name, str(exc)) from None
    if ms > MAX_QUERY_TIME_MS:
        raise bad_param(name, "is out of range: times up to 9998-01-01T00:00:00Z")
    return ms


def parse_wait_for(values: list[str], default_topic: str) -> list[tuple[str, int, int]]:
    """`partition:offset` or `topic:partition:offset` items, as ingest returned them."""
    targets = []
    for value in values:
        parts = value.rsplit(":", 2)
        try:
            if len(parts) == 2:
                topic, partition, offset = default_topic, int(parts[0]), int(parts[1])
            elif len(parts) == 3:
                topic, partition, offset = parts[0], int(parts[1]), int(parts[2])
            else:
                raise ValueError
        except ValueError:
            raise bad_param("wait_for", f"{value[:60]!r} is not 'partition:offset'") from None
        if not (0 <= partition < 2**31 and 0 <= offset < 2**63):  # Kafka's int32 and int64
            raise bad_param("wait_for", f"{value[:60]!r}: partition or offset out of range")
        targets.append((topic, partition, offset))
    return targets


def parse_duration_param(name: str, value: str, multiple_of_ms: int) -> int:
    """Milliseconds from `15m`, `1h`, `2d`, `90s`, `500ms` or plain ms; a positive
    multiple of `multiple_of_ms` (a view's bucket: windows are whole buckets)."""
    match = _DURATION.match(value.strip())
    if match is None:
        raise bad_param(name, f"{value!r} is not a duration such as 1m, 1h, 1d or 60000 (ms)")
    ms = int(match.group(1)) * _UNIT_MS[match.group(2)]
    if ms > MAX_WINDOW_MS:
        raise bad_param(name, f"{value} is longer than 366 days")
    if ms % multiple_of_ms:
        raise bad_param(name, f"{value} is not a whole multiple of the view's {multiple_of_ms} ms")
    return ms


def whole_number(value: object) -> object:
    """An integer query parameter's check (`BeforeValidator`, after its `Query`): pydantic's
    lax mode would also take `1.0` or `1e3` from a query string (schemathesis found
    `wait_ms=0.0` answered 200)."""
    if isinstance(value, str) and not _is_ascii_digits(value):
        raise ValueError("must be a whole number")
    return value
