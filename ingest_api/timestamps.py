"""`occurred_at` in, epoch milliseconds out: the Kafka record timestamp of an event.

Accepted: an RFC 3339 date-time string with an explicit offset (`2024-05-01T12:00:00Z`,
`2024-05-01T14:00:00.250+02:00`), or a JSON integer of epoch milliseconds. Rejected, each
with a message a client can act on: booleans and floats (JSON `true`, `1.7e12`: ambiguous),
numeric strings, naive date-times (no offset: whose local time?), dates before the epoch
(Kafka timestamps are non-negative), and anything later than `now + max_future_ms` (the
broker would reject it too, `log.message.timestamp.after.max.ms`).
"""

from __future__ import annotations

import re
import time
from datetime import datetime

__all__ = ["InvalidTimestampError", "now_ms", "parse_occurred_at", "parse_time_value"]

# RFC 3339 section 5.6 (with 't'/'z' in either case and a space separator, as it allows).
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?P<frac>\.\d+)?(?P<offset>[Zz]|[+-]\d{2}:\d{2})?"
)
_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z; the future bound is far tighter
_EXAMPLE = "e.g. '2024-05-01T12:00:00Z' or epoch milliseconds 1714564800000"


class InvalidTimestampError(ValueError):
    """`occurred_at` is not an acceptable event time; the message says why and what is."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def parse_time_value(value: object) -> int:
    """Epoch milliseconds of an RFC 3339 string with offset or a JSON integer (any value:
    the bounds of an event time are `parse_occurred_at`'s)."""
    if isinstance(value, bool):  # before int: bool is an int subclass
        raise InvalidTimestampError(
            f"must be an RFC 3339 string or an integer, not a boolean; {_EXAMPLE}"
        )
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 2**63:  # a huge JSON integer parses as a float
            raise InvalidTimestampError(f"{value:.0f} is out of range; {_EXAMPLE}")
        raise InvalidTimestampError(
            f"must be an integer of epoch milliseconds, not a fraction; {_EXAMPLE}"
        )
    if isinstance(value, str):
        return _parse_rfc3339(value)
    raise InvalidTimestampError(f"must be an RFC 3339 string or an integer; {_EXAMPLE}")


def parse_occurred_at(value: object, *, now: int, max_future_ms: int) -> int:
    """Epoch milliseconds of `value`, checked to lie in [1970, now + max_future_ms]."""
    millis = parse_time_value(value)
    if millis < 0:
        raise InvalidTimestampError("is before 1970-01-01T00:00:00Z; Kafka timestamps cannot be")
    latest = now + max_future_ms
    if millis > latest:
        ahead_s = (millis - now) / 1000
        raise InvalidTimestampError(
            f"is {ahead_s:,.0f}s in the future; at most {max_future_ms // 1000:,}s ahead of "
            "the server clock is accepted (check the client clock and time zone)"
        )
    return millis


def _parse_rfc3339(text: str) -> int:
    if len(text) > 64:
        raise InvalidTimestampError(f"is not an RFC 3339 date-time; {_EXAMPLE}")
    if text.isdigit():
        raise InvalidTimestampError(
            f"epoch milliseconds must be a JSON number, not a string; {_EXAMPLE}"
        )
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise InvalidTimestampError(f"{text!r} is not an RFC 3339 date-time; {_EXAMPLE}")
    if match["offset"] is None:
        raise InvalidTimestampError(
            f"{text!r} has no UTC offset; add 'Z' or one like '+02:00' (naive times are ambiguous)"
        )
    frac = match["frac"] or ""
    base = text[: match.start("frac")] if frac else text[: match.start("offset")]
    offset = match["offset"].upper()
    iso = base.replace("t", "T") + ("+00:00" if offset == "Z" else offset)
    try:
        seconds = int(datetime.fromisoformat(iso).timestamp())
    except (ValueError, OverflowError) as exc:
        raise InvalidTimestampError(f"{text!r} is not a valid date-time: {exc}") from None
    # Whole seconds from datetime, milliseconds from the fraction (truncated, not rounded).
    millis = int((frac[1:] + "000")[:3]) if frac else 0
    total = seconds * 1000 + millis
    if total > _MAX_MS:
        raise InvalidTimestampError(f"{text!r} is out of range")
    return total
