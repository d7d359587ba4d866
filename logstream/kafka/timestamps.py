"""Event time <-> Kafka record timestamp, including the event time 0 librdkafka cannot write.

Why: librdkafka reads a produce timestamp of 0 as "unset" and stamps the message with the
current time (`rd_kafka_msg_new0`: `timestamp ? timestamp : now`; there is no flag to say
"really 0"). An event at 1970-01-01T00:00:00Z (ingest accepts it) was therefore logged as
happening now, and every reader of record timestamps counted it now.

No librdkafka call writes a record timestamp of 0, so such an event is written with
Kafka's "no timestamp" value, -1 (accepted by brokers for CreateTime topics, never
stamped by librdkafka, and ordered before every real time, as 0 is). Its `occurred_at`
in the Avro value stays 0, and is the truth: a reader that sees -1 takes the event time
from the value (`event_time`). Every other event time is written unchanged.
"""

from __future__ import annotations

__all__ = ["NO_TIMESTAMP", "event_time", "record_timestamp"]

NO_TIMESTAMP = -1


def record_timestamp(event_ms: int) -> int:
    """The timestamp to hand librdkafka's produce() for an event at `event_ms`."""
    return NO_TIMESTAMP if event_ms == 0 else event_ms


def event_time(record_ms: int, occurred_at_ms: int | None) -> int:
    """The event time of a consumed record: its timestamp, unless that is "no timestamp"
    (or anything before 1970), in which case the value's `occurred_at` (else 0)."""
    if record_ms >= 0:
        return record_ms
    return occurred_at_ms if occurred_at_ms is not None else 0
