"""Where the Java Kafka client puts a keyed message, written again from Java's source.

A line-by-line port of `org.apache.kafka.common.utils.Utils.murmur2` and `toPositive`
(the partition of a keyed record under Java's default partitioner is
`toPositive(murmur2(key)) % partitions`). It is kept apart from logstream's code on purpose:
the tests compare what librdkafka did with what Java would do, so the expectation must not
come from the code under test. Java's `int` arithmetic wraps at 32 bits; every step below
masks to 32 bits and `>>>` is a shift of the unsigned value.
"""

from __future__ import annotations

__all__ = ["java_partition", "murmur2", "to_positive"]

_MASK = 0xFFFFFFFF
_SEED = 0x9747B28C
_M = 0x5BD1E995
_R = 24


def _signed(value: int) -> int:
    value &= _MASK
    return value - (1 << 32) if value & 0x80000000 else value


def murmur2(data: bytes) -> int:
    """Java's `Utils.murmur2(byte[])`: a signed 32-bit int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    length4 = length // 4
    for i in range(length4):
        i4 = i * 4
        k = data[i4] + (data[i4 + 1] << 8) + (data[i4 + 2] << 16) + (data[i4 + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> _R
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    tail = length & ~3
    rest = length % 4
    # Java's switch falls through: case 3 also runs 2 and 1, case 2 also runs 1.
    if rest >= 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return _signed(h)


def to_positive(number: int) -> int:
    """Java's `Utils.toPositive(int)`: clears the sign bit (not `abs`)."""
    return number & 0x7FFFFFFF


def java_partition(key: bytes, partitions: int) -> int:
    """`Utils.toPositive(Utils.murmur2(key)) % partitions`."""
    return to_positive(murmur2(key)) % partitions
