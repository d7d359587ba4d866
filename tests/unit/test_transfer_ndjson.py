"""Import file parsing and validation, without a broker: NDJSON lines, export files, rules."""

from __future__ import annotations

import json
from pathlib import Path

import fastavro
import pytest

from logstream.cli.transfer import like_rule
from logstream.codec import Codec
from logstream.schemas import SchemaCatalogue
from logstream.settings import Settings
from logstream.transfer import Format, RecordRejected, export_schema, parse_time_bound
from logstream.transfer.export import FORMAT_VERSION, META_FORMAT
from logstream.transfer.importer import (
    MAX_LINE_BYTES,
    avro_event_type,
    detect_format,
    ndjson_event_id,
    parse_ndjson_line,
    read_avro,
    read_ndjson,
)

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z
EVENT_ID = "6f1c1c1e-1111-4111-8111-111111111111"


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(SchemaCatalogue.load(Settings().resolved_schema_dir))


@pytest.fixture(scope="module")
def rule(codec: Codec):
    return like_rule(Settings(ingest_max_future_ms=3_600_000), codec)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_parse_line_accepts_an_object() -> None:
    assert parse_ndjson_line(b'{"url": "u", "user_id": "x"}') == {"url": "u", "user_id": "x"}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"url": ', "not valid JSON"),
        (b'{"n": NaN}', "NaN is not valid JSON"),
        (b"[1, 2]", "got list"),
        (b"null", "got null"),
        (b'"text"', "got str"),
        (b'{"url": "\xff"}', "not valid UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    ],
)
def test_parse_line_rejects(raw: bytes, reason: str) -> None:
    with pytest.raises(RecordRejected, match=reason):
        parse_ndjson_line(raw)


def test_read_ndjson_numbers_lines_skips_blanks_and_reports_bad_ones(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "likes.ndjson",
        b'\xef\xbb\xbf{"a": 1}\n\n   \n{"a": 2}\r\n{broken\n{"a": 3}',
    )
    items = list(read_ndjson(path))
    assert [(i.where, i.fields, i.error is not None) for i in items] == [
        ("line 1", {"a": 1}, False),
        ("line 4", {"a": 2}, False),
        ("line 5", None, True),
        ("line 6", {"a": 3}, False),
    ]


def test_overlong_line_is_rejected_and_the_next_line_still_read(tmp_path: Path) -> None:
    long_line = b'{"a": "' + b"x" * (MAX_LINE_BYTES + 10) + b'"}\n'
    path = write(tmp_path, "big.ndjson", long_line + b'{"a": 2}\n')
    items = list(read_ndjson(path))
    assert items[0].where == "line 1"
    assert items[0].error is not None and "longer than" in items[0].error
    assert (items[1].where, items[1].fields) == ("line 2", {"a": 2})


def test_detect_format(tmp_path: Path) -> None:
    assert detect_format(Path("x.avro")) is Format.AVRO
    assert detect_format(Path("x.NDJSON")) is Format.NDJSON
    assert detect_format(Path("x.jsonl")) is Format.NDJSON
    assert detect_format(write(tmp_path, "dump.bin", b"Obj\x01rest")) is Format.AVRO
    assert detect_format(write(tmp_path, "dump.txt", b'{"a": 1}\n')) is Format.NDJSON


def test_like_rule_matches_ingest_and_accepts_old_times(rule) -> None:
    fields = {"url": "https://e.com/1", "user_id": "u1", "occurred_at": "2001-02-03T04:05:06.789Z"}
    prepared = rule(dict(fields), NOW)
    assert prepared.key == b"https://e.com/1"
    assert prepared.timestamp_ms == 981_173_106_789
    assert prepared.value[:2] == b"\xc3\x01"
    # No event_id: a stable one derived from the content, so re-imports share ids.
    assert rule(dict(fields), NOW).value == prepared.value
    assert ndjson_event_id(fields) == ndjson_event_id(dict(reversed(fields.items())))


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"url": "u", "user_id": "x"}, "occurred_at: is required"),
        ({"url": "u", "user_id": "x", "occurred_at": NOW + 7_200_000}, "in the future"),
        ({"url": "u", "user_id": "x", "occurred_at": "2024-05-01T12:00:00"}, "no UTC offset"),
        ({"url": "u", "user_id": "x", "occurred_at": 1.5}, "not a fraction"),
        ({"url": "", "user_id": "x", "occurred_at": NOW}, "url"),
        ({"user_id": "x", "occurred_at": NOW}, "url: is required"),
        ({"url": "u", "user_id": "x", "occurred_at": NOW, "likes": 2}, "likes: is not a field"),
        ({"url": "u", "user_id": "x", "occurred_at": NOW, "event_id": "nope"}, "event_id"),
    ],
)
def test_like_rule_rejects_what_ingest_rejects(rule, fields: dict, reason: str) -> None:
    with pytest.raises(RecordRejected, match=reason):
        rule(fields, NOW)


def test_export_file_reads_back_in_base_types(tmp_path: Path, codec: Codec) -> None:
    latest = codec.catalogue.latest("like")
    event = {
        "event_id": EVENT_ID,
        "url": "https://e.com/1",
        "user_id": "u1",
        "occurred_at": 1_767_225_600_123,
        "referrer": None,
    }
    record = {
        "topic": "likes",
        "partition": 3,
        "offset": 17,
        "timestamp_ms": 1_767_225_600_123,
        "key": b"https://e.com/1",
        "headers": [{"key": "h", "value": b"v"}],
        "writer_version": 1,
        "event": event,
    }
    path = tmp_path / "likes.avro"
    with path.open("wb") as out:
        fastavro.writer(
            out,
            fastavro.parse_schema(export_schema(latest)),
            [record],
            metadata={META_FORMAT: FORMAT_VERSION},
        )
    assert avro_event_type(path) == "logstream.events.Like"
    (item,) = list(read_avro(path))
    assert item.fields == event  # plain int and str again, not datetime and UUID
    assert (item.key, item.timestamp_ms, item.headers) == (
        record["key"],
        1_767_225_600_123,
        [("h", b"v")],
    )
    assert item.where == "record 1 (likes[3]@17)"


def test_plain_avro_file_is_not_an_export(tmp_path: Path) -> None:
    path = tmp_path / "other.avro"
    schema = {"type": "record", "name": "X", "fields": [{"name": "a", "type": "int"}]}
    with path.open("wb") as out:
        fastavro.writer(out, fastavro.parse_schema(schema), [{"a": 1}])
    with pytest.raises(Exception, match="not a logstream export file"):
        avro_event_type(path)
    garbage = write(tmp_path, "garbage.avro", json.dumps({"a": 1}).encode())
    with pytest.raises(Exception, match="not an Avro object container file"):
        avro_event_type(garbage)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1767225600000", 1_767_225_600_000),
        ("2026-01-01T00:00:00Z", 1_767_225_600_000),
        ("2026-01-01T01:00:00.250+01:00", 1_767_225_600_250),
        ("2026-01-01T00:00:00", 1_767_225_600_000),
    ],
)
def test_time_bounds(text: str, ms: int) -> None:
    assert parse_time_bound(text) == ms


def test_bad_time_bound_names_the_option() -> None:
    with pytest.raises(Exception, match="--until 'yesterday'"):
        parse_time_bound("yesterday", "--until")
