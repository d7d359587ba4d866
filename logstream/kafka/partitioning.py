"""Which partition a key goes to: the Java client's rule, which every logstream producer
follows (librdkafka `partitioner=murmur2_random`, see `logstream.kafka.config`).

Why have it in Python at all: tools that must place keys themselves (a producer that splits
a stream by partition, a reader that wants one URL's partition without producing) must agree
with what ingest does; librdkafka does not expose its partitioner.
"""

from __future__ import annotations

__all__ = ["murmur2", "partition_for"]

_MASK = 0xFFFFFFFF
_SEED = 0x9747B28C
_M = 0x5BD1E995


def murmur2(key: bytes) -> int:
    """Kafka's murmur2 of `key` (`org.apache.kafka.common.utils.Utils.murmur2`), as an
    unsigned 32-bit value."""
    length = len(key)
    h = (_SEED ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(key[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = key[whole:]
    if tail:
        h ^= int.from_bytes(tail, "little")  # the fall-through switch of the Java source
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """`Utils.toPositive(Utils.murmur2(key)) % partitions`: where a keyed event lands."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
