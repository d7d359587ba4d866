"""NDJSON bodies are read line by line and stop early: after `MAX_REPORTED_LINES` bad lines
and as soon as a batch holds more events than allowed, so what a body costs is bounded by
the batch limit, not by its size (issue 11: 8 MiB of bad lines once cost 50 s of CPU)."""

from __future__ import annotations

import json
import time

import pytest

from ingest_api.body import MAX_REPORTED_LINES, parse_ndjson
from ingest_api.errors import ApiError


def refused(body: bytes, max_events: int | None = None) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse_ndjson(body, max_events)
    return caught.value


def test_values_in_order_blank_lines_skipped_crlf_allowed():
    events = [{"n": i} for i in range(5)]
    body = b"\n\n".join(json.dumps(e).encode() for e in events) + b"\r\n  \n"
    assert parse_ndjson(body, 5) == events


def test_every_bad_line_is_reported_with_its_event_index_and_line():
    body = b'{"n": 0}\n\n{oops\n{"n": 1}\n[1,\n'
    error = refused(body)
    assert (error.status, error.code) == (400, "malformed_json")
    assert error.message == "2 line(s) are not valid JSON"
    assert [(f.index, f.message.split(":")[0]) for f in error.fields] == [
        (1, "line 3"),
        (3, "line 5"),
    ]


def test_reading_stops_after_the_reported_number_of_bad_lines():
    lines = 1_000_000
    body = b"{x\n" * lines  # ~3 MiB: a million bad lines, as once parsed whole
    started = time.perf_counter()
    error = refused(body, 10_000)
    elapsed = time.perf_counter() - started
    assert error.code == "malformed_json"
    assert len(error.fields) == MAX_REPORTED_LINES
    assert [f.index for f in error.fields] == list(range(MAX_REPORTED_LINES))
    assert error.message == (
        f"at least {MAX_REPORTED_LINES} line(s) are not valid JSON "
        f"(reading stopped at line {MAX_REPORTED_LINES})"
    )
    assert elapsed < 0.5, f"{elapsed:.2f} s for a body that stops after 100 lines"


def test_more_events_than_the_batch_limit_is_413_without_reading_on():
    body = b"{}\n" * 2_000_000 + b"{oops\n"  # the bad line is past the limit: never read
    error = refused(body, 3)
    assert (error.status, error.code) == (413, "too_many_events")
    assert "more than 3 events; at most 3 per batch" in error.message
    assert parse_ndjson(b"{}\n" * 3, 3) == [{}] * 3  # exactly the limit is fine


def test_a_bad_line_before_the_limit_is_still_the_400():
    error = refused(b"{oops\n" + b"{}\n" * 10, 3)
    assert error.code == "malformed_json" and error.fields[0].index == 0
