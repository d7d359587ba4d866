"""The test-side port of Java's murmur2 gives the values Kafka's own UtilsTest expects.

`tests/java_partitioner.py` is the yardstick the partitioning tests measure librdkafka
against, so it is checked first against the Java project's published vectors; the
integration test `test_partitioning.py` also checks it against the real kafka-clients jar.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logstream.kafka.partitioning import murmur2 as murmur2_unsigned
from logstream.kafka.partitioning import partition_for
from tests.java_partitioner import java_partition, murmur2, to_positive

# org.apache.kafka.common.utils.UtilsTest#testMurmur2 (Apache Kafka).
KAFKA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("key", "expected"), KAFKA_VECTORS)
def test_murmur2_matches_kafka_utils_test(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


def test_to_positive_clears_the_sign_bit_instead_of_negating() -> None:
    assert to_positive(-1) == 0x7FFFFFFF
    assert to_positive(-(2**31)) == 0
    assert to_positive(42) == 42


def test_partition_is_in_range_for_negative_hashes() -> None:
    key = b"a-little-bit-longer-string"
    assert murmur2(key) < 0
    assert java_partition(key, 6) == (-1486304829 & 0x7FFFFFFF) % 6


@given(st.binary(max_size=64), st.integers(min_value=1, max_value=1000))
def test_logstream_partition_for_agrees_with_the_port(key: bytes, partitions: int) -> None:
    """logstream's own helper (used by tools that place keys themselves) agrees with the
    independent port for every key length and partition count."""
    assert partition_for(key, partitions) == java_partition(key, partitions)
    assert murmur2_unsigned(key) == murmur2(key) & 0xFFFFFFFF
