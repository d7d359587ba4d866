"""The wire format, checked against an independent CRC-64-AVRO and canonical form."""

from __future__ import annotations

import io
import json
import shutil
import struct
import uuid
from pathlib import Path
from typing import Any

import avro.schema
import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logstream.codec import HEADER_SIZE, MAGIC, Codec, InvalidRecordError
from logstream.errors import CodecError, CorruptMessageError, UnknownSchemaError
from logstream.schemas import SchemaCatalogue

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "avro_schemas"
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def _crc64_avro(data: bytes) -> bytes:
    """CRC-64-AVRO as in the Avro spec, little-endian: written here, not imported."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    result = empty
    for byte in data:
        result = (result >> 8) ^ table[(result ^ byte) & 0xFF]
    return struct.pack("<Q", result)


def _canonical(node: Any, namespace: str | None = None) -> Any:
    """Parsing canonical form for records of primitives/unions (the subset our files use)."""
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        return [_canonical(n, namespace) for n in node]
    if node["type"] in _PRIMITIVES:  # {"type": "long", "logicalType": ...} -> "long" (as Java)
        return node["type"]
    assert node["type"] == "record"
    name = (
        node["name"]
        if "." in node["name"]
        else f"{node.get('namespace', namespace)}.{node['name']}"
    )
    return {
        "name": name,
        "type": "record",
        "fields": [
            {"name": f["name"], "type": _canonical(f["type"], name.rsplit(".", 1)[0])}
            for f in node["fields"]
        ],
    }


def _expected_fingerprint(file: Path) -> bytes:
    form = json.dumps(_canonical(json.loads(file.read_text())), separators=(",", ":"))
    return _crc64_avro(form.encode())


def _like(**overrides: Any) -> dict[str, Any]:
    record = {
        "event_id": str(uuid.uuid4()),
        "url": "https://example.com/a?b=c",
        "user_id": "user-1",
        "occurred_at": 1_700_000_000_123,
    }
    record.update(overrides)
    return record


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(SchemaCatalogue.load(SCHEMA_DIR))


def _write_v1(record: dict[str, Any]) -> bytes:
    """A v1 message as another producer would write it: header + fastavro body from the file."""
    file = SCHEMA_DIR / "like.v1.avsc"
    schema = fastavro.parse_schema(json.loads(file.read_text()))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, schema, record)
    return MAGIC + _expected_fingerprint(file) + body.getvalue()


def test_test_crc_matches_the_avro_package() -> None:
    # The avro package agrees on schemas without logical types (it keeps {"type": ...}
    # for logical ones, unlike Java and fastavro; see README, Message format).
    for text in ('"int"', '{"type":"record","name":"R","fields":[{"name":"a","type":"long"}]}'):
        assert _crc64_avro(avro.schema.parse(text).canonical_form.encode()) == avro.schema.parse(
            text
        ).fingerprint("CRC-64-AVRO")


def test_bytes_start_with_magic_and_fingerprint_of_latest_avsc(codec: Codec) -> None:
    data = codec.encode("like", _like())
    assert data[:2] == b"\xc3\x01"
    assert data[2:HEADER_SIZE] == _expected_fingerprint(SCHEMA_DIR / "like.v2.avsc")


def test_catalogue_fingerprints_match_the_independent_ones(codec: Codec) -> None:
    for version in codec.catalogue:
        assert version.fingerprint == _expected_fingerprint(version.path)


def test_round_trip_keeps_plain_types(codec: Codec) -> None:
    record = _like(referrer="https://ref.example/")
    writer, decoded = codec.decode(codec.encode("likes", record))
    assert writer.version == 2
    assert decoded == record
    assert type(decoded["occurred_at"]) is int
    assert type(decoded["event_id"]) is str
    json.dumps(decoded)


def test_missing_optional_field_takes_its_default(codec: Codec) -> None:
    _, decoded = codec.decode(codec.encode("like", _like()))
    assert decoded["referrer"] is None


def test_v1_message_decodes_into_v2(codec: Codec) -> None:
    record = _like()
    writer, decoded = codec.decode(_write_v1(record))
    assert writer.version == 1
    assert decoded == {**record, "referrer": None}


def test_fast_path_equals_fastavro_resolution(codec: Codec) -> None:
    record = _like()
    data = _write_v1(record)
    latest = json.loads((SCHEMA_DIR / "like.v2.avsc").read_text())
    writer = json.loads((SCHEMA_DIR / "like.v1.avsc").read_text())
    resolved = fastavro.schemaless_reader(
        io.BytesIO(data[HEADER_SIZE:]), fastavro.parse_schema(writer), fastavro.parse_schema(latest)
    )
    assert isinstance(resolved, dict)
    resolved["event_id"] = str(resolved["event_id"])
    resolved["occurred_at"] = record["occurred_at"]  # fastavro gives a datetime here
    assert codec.decode(data)[1] == resolved


def test_other_writer_shapes_use_fastavro_resolution(tmp_path: Path) -> None:
    folder = tmp_path / "schemas"
    shutil.copytree(SCHEMA_DIR, folder)
    v3 = json.loads((SCHEMA_DIR / "like.v2.avsc").read_text())
    v3["logstream.version"] = 3
    v3["fields"] = [f for f in v3["fields"] if f["name"] != "user_id"]  # dropped field
    (folder / "like.v3.avsc").write_text(json.dumps(v3))
    codec = Codec(SchemaCatalogue.load(folder))
    record = _like()
    _, decoded = codec.decode(_write_v1(record))
    del record["user_id"]
    assert decoded == {**record, "referrer": None}


def test_unknown_fingerprint(codec: Codec) -> None:
    data = codec.encode("like", _like())
    with pytest.raises(UnknownSchemaError, match="0102030405060708"):
        codec.decode(MAGIC + bytes(range(1, 9)) + data[HEADER_SIZE:])


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc3", b"\xc3\x01\x00", b"\x00\x01" + b"\x00" * 20, b'{"url": "x"}' + b" " * 10],
    ids=["empty", "one-byte", "short-header", "bad-magic", "json"],
)
def test_garbage_is_corrupt(codec: Codec, data: bytes) -> None:
    with pytest.raises(CorruptMessageError):
        codec.decode(data)


def test_non_bytes_values(codec: Codec) -> None:
    data = codec.encode("like", _like())
    assert codec.decode(bytearray(data)) == codec.decode(data)
    assert codec.decode(memoryview(data)) == codec.decode(data)
    for value in (None, "c3 01", 42):
        with pytest.raises(CorruptMessageError, match="not bytes"):
            codec.decode(value)  # type: ignore[arg-type]


def test_truncated_and_trailing_bodies_are_corrupt(codec: Codec) -> None:
    data = codec.encode("like", _like())
    for cut in range(HEADER_SIZE, len(data)):
        with pytest.raises(CorruptMessageError):
            codec.decode(data[:cut])
    with pytest.raises(CorruptMessageError, match="trailing"):
        codec.decode(data + b"\x00")


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=80))
def test_random_bodies_decode_or_raise_corrupt(body: bytes) -> None:
    codec = Codec(SchemaCatalogue.load(SCHEMA_DIR))
    header = MAGIC + _expected_fingerprint(SCHEMA_DIR / "like.v2.avsc")
    try:
        _, record = codec.decode(header + body)
    except CorruptMessageError:
        return
    assert set(record) == {"event_id", "url", "user_id", "occurred_at", "referrer"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"url": 3}, "url"),
        ({"occurred_at": "2024-01-01"}, "occurred_at"),
        ({"occurred_at": True}, "occurred_at"),
        ({"occurred_at": 1.5}, "occurred_at"),
        ({"event_id": "not-a-uuid"}, "event_id"),
        ({"referrer": 7}, "referrer"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_records_name_the_field(codec: Codec, change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRecordError, match=field):
        codec.validate("like", _like(**change))
    with pytest.raises(InvalidRecordError, match=field):
        codec.encode("like", _like(**change))


def test_missing_required_field_is_named(codec: Codec) -> None:
    record = _like()
    del record["user_id"]
    with pytest.raises(InvalidRecordError, match="'user_id' is missing"):
        codec.encode("like", record)


def test_codec_errors_share_a_root() -> None:
    assert issubclass(InvalidRecordError, CodecError)


_ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.binary(max_size=5),
    st.uuids().map(str),
)


@settings(max_examples=500, deadline=None)
@given(
    changes=st.dictionaries(
        st.sampled_from(["event_id", "url", "user_id", "occurred_at", "referrer", "colour"]),
        _ANY_VALUE,
        max_size=3,
    ),
    dropped=st.sets(st.sampled_from(["event_id", "url", "user_id", "occurred_at", "referrer"])),
)
def test_encode_accepts_exactly_what_the_schema_validator_accepts(
    codec: Codec, changes: dict[str, Any], dropped: set[str]
) -> None:
    """The flat fast check in `encode` agrees with fastavro's validator plus the UUID rule."""
    record = {**_like(), **changes}
    for name in dropped:
        record.pop(name, None)
    try:
        codec.validate("like", record)  # the slow, reference path
    except InvalidRecordError:
        with pytest.raises(InvalidRecordError):
            codec.encode("like", record)
        return
    _, decoded = codec.decode(codec.encode("like", record))
    assert decoded == {"referrer": None, **record}


def test_like_records_take_the_fast_check(codec: Codec) -> None:
    """Like is made of primitives: `encode` must not fall back to fastavro's validator."""
    from logstream.codec import _fits_flat

    plan = codec._write_plan("like")
    assert plan.flat_fields is not None
    assert _fits_flat(plan, _like())
    assert _fits_flat(plan, _like(referrer="https://example.org/"))
