"""Request bodies: an event as JSON or as Avro single-object encoding (`avro/binary`).

The client fixes each event's `event_id` here, once, before the first attempt: every retry
of that event carries the same id, which is what lets the views count it once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import orjson

from logstream.codec import Codec

__all__ = ["AVRO", "JSON", "Encoding", "avro_record", "encode_event", "with_event_id"]

JSON = "application/json"
AVRO = "avro/binary"
Encoding = Literal["json", "avro"]


def with_event_id(event: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `event` that has an `event_id` (a new UUID4 unless the caller chose one)."""
    prepared = dict(event)
    if not prepared.get("event_id"):
        prepared["event_id"] = str(uuid.uuid4())
    return prepared


def encode_event(
    event_type: str, event: dict[str, Any], encoding: Encoding, codec: Codec | None
) -> tuple[bytes, str]:
    """The body and its Content-Type. JSON leaves defaults (`occurred_at`: now) to ingest;
    Avro has no such thing as an absent field, so `avro_record` fills them in first."""
    if encoding == "json":
        return orjson.dumps(event), JSON
    if encoding == "avro":
        if codec is None:
            raise ValueError("encoding='avro' needs a Codec")
        return codec.encode(event_type, avro_record(event)), AVRO
    raise ValueError(f"unknown encoding {encoding!r}: 'json' or 'avro'")


def avro_record(event: Mapping[str, Any]) -> dict[str, Any]:
    """`event` in the codec's terms: `occurred_at` as epoch ms (an aware datetime is
    converted, an absent one is now). RFC 3339 text is for JSON: ingest parses it there."""
    record = dict(event)
    occurred = record.get("occurred_at")
    if occurred is None:
        record["occurred_at"] = time.time_ns() // 1_000_000
    elif isinstance(occurred, datetime):
        if occurred.tzinfo is None:
            raise ValueError("occurred_at has no UTC offset (naive datetimes are ambiguous)")
        record["occurred_at"] = int(occurred.timestamp() * 1000)
    elif isinstance(occurred, bool) or not isinstance(occurred, int):
        raise TypeError(
            f"occurred_at for avro/binary is epoch milliseconds or an aware datetime, "
            f"not {type(occurred).__name__}"
        )
    return record
