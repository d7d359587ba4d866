"""Validators derived from an `.avsc` alone: every Avro feature, field-level errors, and the
written bytes checked by decoding them with fastavro straight from the file (not our codec)."""

from __future__ import annotations

import json
import uuid
from io import BytesIO
from pathlib import Path
from typing import Any

import fastavro
import pytest

from ingest_api.avro_validation import compile_event_model
from ingest_api.service import EventRejected, IngestState, prepare_event
from logstream.codec import HEADER_SIZE, Codec
from logstream.producer import EventProducer
from logstream.schemas import CatalogueError, SchemaCatalogue
from logstream.settings import Settings
from tests.page_view import PAGE_VIEW

NOW = 1_764_500_000_000  # 2025-11-30T10:53:20Z
VISITOR = "6f9619ff-8b86-d011-b42d-00cf4fc964ff"

# A type with neither key nor event id nor timestamp: all three are optional in a schema.
PING: dict[str, Any] = {
    "type": "record",
    "name": "Ping",
    "logstream.topic": "pings",
    "logstream.version": 1,
    "fields": [{"name": "host", "type": "string"}, {"name": "n", "type": "long", "default": 0}],
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "page_view.v1.avsc").write_text(json.dumps(PAGE_VIEW))
    (tmp_path / "ping.v1.avsc").write_text(json.dumps(PING))
    return tmp_path


@pytest.fixture
def state(folder: Path) -> IngestState:
    settings = Settings(schema_dir=folder)
    codec = Codec(SchemaCatalogue.load(folder))
    # The producer is never started: prepare_event only validates and encodes.
    return IngestState(settings, codec, EventProducer(settings), {"pageview": "pv", "ping": "p"})


def view(**fields: Any) -> dict[str, Any]:
    event = {
        "url": "https://example.com/a",
        "visitor_id": VISITOR,
        "seconds": 12,
        "occurred_at": "2024-05-01T14:00:00.250+02:00",
        "page": {"title": "Home", "section": "NEWS"},
    }
    event.update(fields)
    return event


def prepare(state: IngestState, event_type: str, data: Any) -> tuple[Any, str | None]:
    return prepare_event(state, state.models[event_type], data, now=NOW)


def decoded(definition: dict[str, Any], value: bytes) -> dict[str, Any]:
    """Decode as any Avro user would, from the schema JSON alone (logical types kept)."""
    record = fastavro.schemaless_reader(
        BytesIO(value[HEADER_SIZE:]), fastavro.parse_schema(json.loads(json.dumps(definition)))
    )
    assert isinstance(record, dict)
    return record


def rejected(state: IngestState, event_type: str, data: Any) -> dict[str | None, str]:
    with pytest.raises(EventRejected) as caught:
        prepare(state, event_type, data)
    return {f.field: f.message for f in caught.value.fields}


# ----- what is written --------------------------------------------------------------------------
def test_a_full_event_is_written_with_key_timestamp_and_defaults(state):
    message, event_id = prepare(state, "pageview", view(first_seen=0, tags=["a", "b"]))

    assert message.topic == "pv"
    assert message.key == b"https://example.com/a"
    assert message.timestamp_ms == 1714564800250  # 12:00:00.250Z
    assert event_id is not None and uuid.UUID(event_id).version == 4
    record = decoded(PAGE_VIEW, message.value)
    occurred = record.pop("occurred_at")
    first_seen = record.pop("first_seen")
    assert int(occurred.timestamp() * 1000) == 1714564800250
    assert first_seen.timestamp() == 0
    assert record == {
        "event_id": uuid.UUID(event_id),
        "url": "https://example.com/a",
        "visitor_id": uuid.UUID(VISITOR),
        "seconds": 12,
        "referrer": None,
        "page": {"title": "Home", "referrer": None, "section": "NEWS"},
        "device": "DESKTOP",
        "tags": ["a", "b"],
        "metrics": {},
        "sections_seen": [],
        "checksum": None,
    }


def test_every_feature_accepts_its_values(state):
    event = view(
        event_id=VISITOR.upper(),  # any text form of a UUID, written canonical
        visitor_id="{" + VISITOR + "}",
        occurred_at=1_700_000_000_123,
        referrer="https://r.example/",
        page={"title": "T", "referrer": "https://r2.example/", "section": "SPORT"},
        device="MOBILE",
        metrics={"load": 1.5, "paint": 2},  # an integer is a double too
        sections_seen=["NEWS", "OTHER"],
        checksum="\u00ff\u0000ab",
    )
    message, event_id = prepare(state, "pageview", event)
    assert event_id == VISITOR
    assert message.timestamp_ms == 1_700_000_000_123
    record = decoded(PAGE_VIEW, message.value)
    assert str(record["event_id"]) == str(record["visitor_id"]) == VISITOR
    assert record["page"] == {"title": "T", "referrer": "https://r2.example/", "section": "SPORT"}
    assert record["device"] == "MOBILE"
    assert record["metrics"] == {"load": 1.5, "paint": 2.0}
    assert record["sections_seen"] == ["NEWS", "OTHER"]
    assert record["checksum"] == b"\xff\x00ab"
    assert record["referrer"] == "https://r.example/"


def test_event_time_defaults_to_now_and_null_means_absent(state):
    message, _ = prepare(state, "pageview", view(occurred_at=None, event_id=None))
    assert message.timestamp_ms == NOW
    assert int(decoded(PAGE_VIEW, message.value)["occurred_at"].timestamp() * 1000) == NOW


def test_a_type_without_key_event_id_or_timestamp(state):
    message, event_id = prepare(state, "ping", {"host": "h1"})
    assert event_id is None and message.key is None and message.timestamp_ms == NOW
    assert decoded(PING, message.value) == {"host": "h1", "n": 0}


# ----- field-level errors ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"visitor_id": None}, "visitor_id", "UUID"),  # required: null is no uuid
        ({"seconds": "12"}, "seconds", "integer"),
        ({"seconds": True}, "seconds", "integer"),
        ({"seconds": 2**31}, "seconds", "less than or equal"),
        ({"url": "x" * 101}, "url", "at most 100"),
        ({"url": "\ud800"}, "url", "string"),
        ({"referrer": 5}, "referrer", "string"),
        ({"visitor_id": "nope"}, "visitor_id", "UUID"),
        ({"occurred_at": "2024-05-01T12:00:00"}, "occurred_at", "offset"),
        ({"occurred_at": 1.5e12}, "occurred_at", "fraction"),
        ({"occurred_at": -1}, "occurred_at", "1970"),
        ({"occurred_at": NOW + 2 * 3_600_000}, "occurred_at", "future"),
        ({"first_seen": "yesterday"}, "first_seen", "RFC 3339"),
        ({"page": {"title": "T"}}, "page.section", "required"),
        ({"page": {"title": " ", "section": "NEWS"}}, "page.title", "blank"),
        ({"page": {"title": "T", "section": "NEWS", "referrer": 5}}, "page.referrer", "string"),
        ({"page": {"title": "T", "section": "MUSIC"}}, "page.section", "'NEWS'"),
        ({"page": {"title": "T", "section": "NEWS", "x": 1}}, "page.x", "not a field"),
        ({"page": "home"}, "page", "dictionary"),
        ({"device": "TV"}, "device", "'DESKTOP' or 'MOBILE'"),
        ({"tags": ["a", 1]}, "tags.1", "string"),
        ({"tags": "a"}, "tags", "list"),
        ({"metrics": {"load": "fast"}}, "metrics.load", "number"),
        ({"sections_seen": ["NEWS", "X"]}, "sections_seen.1", "'NEWS'"),
        ({"checksum": "abc"}, "checksum", "exactly 4"),
        ({"checksum": "\u0100bcd"}, "checksum", "0-255"),
        ({"colour": "red"}, "colour", "not a field of a pageview (fields: event_id, url,"),
    ],
)
def test_field_errors_name_the_path(state, change, field, says):
    problems = rejected(state, "pageview", view(**change))
    assert list(problems) == [field]
    assert says in problems[field]


CONTROLS = [chr(c) for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F)]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"url": "https://victim.example/\u0000a"}, "url"),
        ({"referrer": "r\x1b[2J"}, "referrer"),  # inside an optional union
        ({"page": {"title": "T\x7f", "section": "NEWS"}}, "page.title"),
        ({"page": {"title": "T", "section": "NEWS", "referrer": "\x08"}}, "page.referrer"),
        ({"tags": ["a", "b", "c\x00"]}, "tags.2"),
        ({"metrics": {"lo\x00ad": 1.0}}, "metrics.lo\\u0000ad"),  # a map key, shown escaped
    ],
)
def test_control_characters_are_refused_naming_the_field(state, change, field):
    problems = rejected(state, "pageview", view(**change))
    assert list(problems) == [field]
    assert "control character U+00" in problems[field]
    assert not any(c in problems[field] + field for c in CONTROLS)


@pytest.mark.parametrize("char", CONTROLS)
def test_every_forbidden_control_is_refused_and_tab_lf_cr_pass(state, char):
    problems = rejected(state, "pageview", view(url=f"https://a.example/{char}"))
    assert problems == {
        "url": f"contains the control character U+{ord(char):04X} (only TAB, LF, CR are allowed)"
    }
    allowed = view(url="a\tb\nc\rd", tags=["\t"], metrics={"k\n": 1.0}, referrer="\x80\u2028")
    record = decoded(PAGE_VIEW, prepare(state, "pageview", allowed)[0].value)
    assert record["url"] == "a\tb\nc\rd" and record["metrics"] == {"k\n": 1.0}


def test_missing_required_fields_are_each_named(state):
    event = view()
    del event["visitor_id"], event["seconds"]
    assert rejected(state, "pageview", event) == {
        "visitor_id": "is required",
        "seconds": "is required",
    }


def test_not_an_object_names_the_fields(state):
    problems = rejected(state, "ping", ["host"])
    assert problems == {None: "expected a JSON object with host, n, got list"}


# ----- the compiled model itself ---------------------------------------------------------------
def test_json_schema_documents_the_avsc(folder):
    model = compile_event_model(SchemaCatalogue.load(folder).latest("pageview"))
    schema = model.json_schema
    assert "$defs" not in json.dumps(schema)  # inlined: embeddable anywhere in OpenAPI
    assert schema["title"] == "PageviewCreate" and schema["additionalProperties"] is False
    assert set(schema["required"]) == {"url", "visitor_id", "seconds", "page"}
    props = schema["properties"]
    assert props["seconds"]["description"] == "Time on the page."
    assert props["url"]["maxLength"] == 100
    assert props["visitor_id"]["format"] == "uuid"
    assert props["device"]["default"] == "DESKTOP"
    page = props["page"]
    assert page["required"] == ["title", "section"]
    assert page["properties"]["section"]["enum"] == ["NEWS", "SPORT", "OTHER"]
    assert {"type": "string", "format": "date-time"} in props["occurred_at"]["anyOf"]
    assert model.key_field == "url" and model.event_id_field == "event_id"
    assert model.route == "page_views"


def test_like_is_compiled_with_its_length_attributes():
    catalogue = SchemaCatalogue.load(Path(__file__).resolve().parents[2] / "avro_schemas")
    model = compile_event_model(catalogue.latest("like"))
    props = model.json_schema["properties"]
    assert (props["url"]["minLength"], props["url"]["maxLength"]) == (1, 2048)
    assert (props["user_id"]["minLength"], props["user_id"]["maxLength"]) == (1, 512)
    assert model.json_schema["required"] == ["url", "user_id"]
    assert (model.key_field, model.timestamp_field, model.event_id_field) == (
        "url",
        "occurred_at",
        "event_id",
    )


# ----- catalogue: several folders, the event id attribute ---------------------------------------
def test_catalogue_from_several_folders(folder, tmp_path_factory):
    repo_schemas = Path(__file__).resolve().parents[2] / "avro_schemas"
    joined = f"{repo_schemas}:{folder}"
    catalogue = SchemaCatalogue.load(Settings(schema_dir=Path(joined)).resolved_schema_dir)
    assert catalogue.event_types() == ["like", "pageview", "ping"]
    missing = tmp_path_factory.mktemp("x") / "nowhere"
    with pytest.raises(CatalogueError, match="nowhere: not a folder"):
        SchemaCatalogue.load(f"{folder}:{missing}")


def test_event_id_attribute_must_name_a_uuid_field(tmp_path):
    bad = {**PING, "logstream.event_id": "host"}
    (tmp_path / "ping.v1.avsc").write_text(json.dumps(bad))
    with pytest.raises(CatalogueError, match="must be a uuid string"):
        SchemaCatalogue.load(tmp_path)


def test_a_recursive_record_is_checked_by_the_codec(tmp_path):
    node = {
        "type": "record",
        "name": "Node",
        "logstream.topic": "nodes",
        "logstream.version": 1,
        "fields": [
            {"name": "value", "type": "int"},
            {"name": "next", "type": ["null", "Node"], "default": None},
        ],
    }
    (tmp_path / "node.v1.avsc").write_text(json.dumps(node))
    settings = Settings(schema_dir=tmp_path)
    codec = Codec(SchemaCatalogue.load(tmp_path))
    state = IngestState(settings, codec, EventProducer(settings), {"node": "n"})
    assert state.models["node"].complete is False
    chain = {"value": 1, "next": {"value": 2, "next": {"value": 3}}}
    message, _ = prepare(state, "node", chain)
    assert decoded(node, message.value) == {
        "value": 1,
        "next": {"value": 2, "next": {"value": 3, "next": None}},
    }
    problems = rejected(state, "node", {"value": 1, "next": {"value": "two"}})
    assert list(problems) == [None] and "next" in problems[None]


def test_logstream_attributes_change_nothing_on_the_wire():
    """like.v2.avsc carries validation attributes; its fingerprint is the one without them
    (and the one documented in the README), computed by fastavro from the JSON alone."""
    from fastavro.schema import fingerprint, to_parsing_canonical_form

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if not k.startswith("logstream.")}
        if isinstance(node, list):
            return [strip(item) for item in node]
        return node

    path = Path(__file__).resolve().parents[2] / "avro_schemas" / "like.v2.avsc"
    with_attributes = json.loads(path.read_text())
    assert "logstream.max_length" in json.dumps(with_attributes)

    def fp(definition: Any) -> str:
        return fingerprint(
            to_parsing_canonical_form(fastavro.parse_schema(definition)), "CRC-64-AVRO"
        )

    assert fp(with_attributes) == fp(strip(with_attributes)) == "1ff30cf1db6bec5a"
