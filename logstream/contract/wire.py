"""The rules every message of an event topic follows, stated once for both documents.

Each constant is a fact enforced elsewhere (codec, producer config, timestamps); the
documents only repeat them, so a reader of the contract needs no README.
"""

from __future__ import annotations

from typing import Any

from logstream.codec import HEADER_SIZE, MAGIC
from logstream.kafka.config import PARTITIONER
from logstream.kafka.timestamps import NO_TIMESTAMP
from logstream.schemas import SchemaVersion

__all__ = [
    "DLQ_HEADERS",
    "ENCODING",
    "PARTITIONING",
    "TIMESTAMP",
    "TIMESTAMP_RULE",
    "encoding",
    "header_hex",
]

ENCODING_NAME = "avro-single-object"

ENCODING_TEXT = (
    f"Avro single-object encoding: the 2 bytes {MAGIC.hex()} (C3 01), then the 8-byte "
    "little-endian CRC-64-AVRO fingerprint of the writer schema's parsing canonical form, "
    "then the Avro binary body. Look the fingerprint up among the versions of the event "
    "type, decode with that writer schema and resolve into your reader schema (normally the "
    "latest version). Producers always write the latest version."
)

PARTITIONING = {
    "algorithm": "murmur2",
    "formula": "toPositive(murmur2(key)) % partitions",
    "compatible_with": "the Java client's default partitioner "
    "(org.apache.kafka.common.utils.Utils.murmur2)",
    "librdkafka_partitioner": PARTITIONER,
}

TIMESTAMP_RULE = (
    "The record timestamp (CreateTime) is the event time in epoch milliseconds, equal to "
    "the timestamp field. One exception: an event time of 0 (1970-01-01T00:00:00Z) is "
    f"written as {NO_TIMESTAMP} (Kafka's 'no timestamp'), because librdkafka cannot write a "
    "record timestamp of 0; a reader that sees a negative record timestamp takes the event "
    "time from the timestamp field."
)

TIMESTAMP = {
    "type": "CreateTime",
    "unit": "milliseconds since 1970-01-01T00:00:00Z",
    "event_time_zero_written_as": NO_TIMESTAMP,
    "description": TIMESTAMP_RULE,
}

# Headers of a dead letter (see logstream.runtime.dlq): UTF-8 text values.
DLQ_HEADERS = {
    "logstream.error": "the error, '<class>: <message>' (at most 1000 characters)",
    "logstream.error.class": "the error's class, e.g. CorruptMessageError, UnknownSchemaError",
    "logstream.view": "the view (consumer group) that could not apply the message",
    "logstream.origin.topic": "the topic the message was read from",
    "logstream.origin.partition": "its partition (decimal)",
    "logstream.origin.offset": "its offset (decimal)",
    "logstream.origin.timestamp": "its record timestamp in epoch ms (decimal; -1: none)",
}


def header_hex(version: SchemaVersion) -> str:
    """The first bytes of every message written with `version`, as hex."""
    return (MAGIC + version.fingerprint).hex()


def encoding() -> dict[str, Any]:
    """The framing of a message value, as data."""
    return {
        "name": ENCODING_NAME,
        "magic": MAGIC.hex(),
        "fingerprint": "CRC-64-AVRO (Rabin) of the parsing canonical form, 8 bytes little-endian",
        "header_bytes": HEADER_SIZE,
        "description": ENCODING_TEXT,
    }


ENCODING = encoding()
