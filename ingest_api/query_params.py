"""Query-string parsing for the read API: times, durations and read-your-writes targets.

Times are RFC 3339 or epoch milliseconds, as at ingest; every error names its parameter.
"""

from __future__ import annotations

import re

from ingest_api.errors import ApiError
from ingest_api.models import FieldError
from ingest_api.timestamps import InvalidTimestampError, parse_occurred_at

__all__ = ["MAX_TIME_MS", "bad_param", "parse_duration_param", "parse_time_param", "parse_wait_for"]

_NO_FUTURE_BOUND = 10**15
MAX_TIME_MS = _NO_FUTURE_BOUND  # times, cursors and window sizes stay far inside int64
_DURATION = re.compile(r"^([1-9][0-9]{0,12})(ms|s|m|h|d)?$")
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1}


def bad_param(name: str, message: str) -> ApiError:
    return ApiError(
        422, "invalid_parameter", f"{name}: {message}", [FieldError(field=name, message=message)]
    )


def parse_time_param(name: str, value: str | None) -> int | None:
    """Epoch ms from `2024-05-01T12:00:00Z` or `1714564800000`; None when absent."""
    if value is None:
        return None
    raw: object = int(value) if value.isdigit() else value
    try:
        return parse_occurred_at(raw, now=0, max_future_ms=_NO_FUTURE_BOUND)
    except InvalidTimestampError as exc:
        raise bad_param(name, str(exc)) from None


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
            raise bad_param("wait_for", f"{value!r} is not 'partition:offset'") from None
        if partition < 0 or offset < 0:
            raise bad_param("wait_for", f"{value!r}: partition and offset must be >= 0")
        targets.append((topic, partition, offset))
    return targets


def parse_duration_param(name: str, value: str, multiple_of_ms: int) -> int:
    """Milliseconds from `15m`, `1h`, `2d`, `90s`, `500ms` or plain ms; a positive
    multiple of `multiple_of_ms` (a view's bucket: windows are whole buckets)."""
    match = _DURATION.match(value.strip())
    if match is None:
        raise bad_param(name, f"{value!r} is not a duration such as 1m, 1h, 1d or 60000 (ms)")
    ms = int(match.group(1)) * _UNIT_MS[match.group(2)]
    if ms > MAX_TIME_MS:
        raise bad_param(name, f"{value} is longer than {MAX_TIME_MS} ms")
    if ms % multiple_of_ms:
        raise bad_param(name, f"{value} is not a whole multiple of the view's {multiple_of_ms} ms")
    return ms
