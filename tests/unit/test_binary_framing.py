"""The avro-batch framing: what any Avro encoder writes as a sequence of `bytes` values
splits back into the same events, and every malformed body is a 4xx, never a crash."""

from __future__ import annotations

from io import BytesIO

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest_api.binary import split_batch
from ingest_api.errors import ApiError


def framed(events: list[bytes]) -> bytes:
    out = BytesIO()
    for event in events:
        fastavro.schemaless_writer(out, "bytes", event)  # Avro long length, then the bytes
    return out.getvalue()


@given(st.lists(st.binary(max_size=300), max_size=40))
def test_avro_bytes_sequence_round_trips(events: list[bytes]) -> None:
    assert split_batch(framed(events), max_events=40) == events


@given(st.binary(max_size=200))
def test_any_body_splits_or_is_a_4xx(body: bytes) -> None:
    try:
        events = split_batch(body, max_events=1000)
    except ApiError as exc:
        assert exc.status in (400, 413)
    else:
        assert sum(len(e) for e in events) <= len(body)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"\x01", "length -1"),  # zig-zag 1 = -1
        (b"\x0a" + b"abc", "length 5 does not fit the 3 byte(s) left"),
        (b"\x80\x80", "ends inside a length"),
        (b"\xff" * 11, "longer than 10 bytes"),
    ],
)
def test_malformed_framing_is_400_saying_why(body: bytes, says: str) -> None:
    with pytest.raises(ApiError) as info:
        split_batch(body, max_events=10)
    assert (info.value.status, info.value.code) == (400, "malformed_avro")
    assert says in info.value.message


def test_too_many_events_stops_before_slicing_them_all() -> None:
    with pytest.raises(ApiError) as info:
        split_batch(b"\x00" * 1_000_000, max_events=5)  # a million empty events
    assert (info.value.status, info.value.code) == (413, "too_many_events")
    assert split_batch(b"\x00" * 5, max_events=5) == [b""] * 5
