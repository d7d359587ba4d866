"""Avro single-object encoding of events: the public format of every message value.

Wire format: `C3 01` + 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's
parsing canonical form + Avro binary body. Any Avro library can decode it with the `.avsc`.

Records are plain JSON-able dicts in Avro *base* types: a `timestamp-millis` field is an
int of epoch milliseconds and a `uuid` field is a str, on encode and on decode. The codec
reads and writes with the logical types stripped (they are not part of the canonical form,
so fingerprints are unchanged); the `.avsc` keeps them as documentation for other languages.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from io import BytesIO
from typing import Any, cast

import fastavro
from fastavro import schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError, validate

from logstream.errors import CodecError, CorruptMessageError, UnknownSchemaError
from logstream.schemas import SchemaCatalogue, SchemaVersion

__all__ = ["HEADER_SIZE", "MAGIC", "Codec", "InvalidRecordError", "header_for"]

MAGIC = b"\xc3\x01"
HEADER_SIZE = len(MAGIC) + 8
_IMMUTABLE_DEFAULTS = (type(None), bool, int, float, str)
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


class InvalidRecordError(CodecError):
    """A record to encode does not match its schema; the message names the field."""


def header_for(version: SchemaVersion) -> bytes:
    """The 10 bytes that start every message written with `version`."""
    return MAGIC + version.fingerprint


@dataclass(frozen=True, slots=True)
class _ReadPlan:
    """How to turn a body written with one writer version into a latest-version record."""

    writer: SchemaVersion
    writer_schema: dict[str, Any]
    reader_schema: dict[str, Any] | None  # None: no fastavro resolution needed
    defaults: tuple[tuple[str, Any], ...]  # reader-only fields added after a plain read


@dataclass(frozen=True, slots=True)
class _WritePlan:
    version: SchemaVersion
    header: bytes
    schema: dict[str, Any]
    field_names: frozenset[str]
    uuid_fields: tuple[str, ...]
    flat_fields: tuple[_FlatField, ...] | None  # None: not flat, always use fastavro's validate


@dataclass(frozen=True, slots=True)
class _FlatField:
    """What a field of primitives (or a union of them) accepts, checked without fastavro."""

    name: str
    types: tuple[type, ...]
    required: bool  # no default in the schema
    int_bits: int  # 32 or 64 when the field takes Avro int/long values, else 0


class Codec:
    """Encodes with the latest version of an event type; decodes any version ever written."""

    def __init__(self, catalogue: SchemaCatalogue) -> None:
        self.catalogue = catalogue
        plain = {v.fingerprint: _plain_schema(v.definition) for v in catalogue}
        # Keyed by the whole 10-byte header: one slice and one dict lookup per message.
        self._read_plans: dict[bytes, _ReadPlan] = {}
        self._write_plans: dict[str, _WritePlan] = {}
        for event_type in catalogue.event_types():
            latest = catalogue.latest(event_type)
            for writer in catalogue.versions(event_type):
                self._read_plans[header_for(writer)] = _read_plan(writer, latest, plain)
            plan = _WritePlan(
                version=latest,
                header=header_for(latest),
                schema=plain[latest.fingerprint],
                field_names=frozenset(f["name"] for f in latest.definition["fields"]),
                uuid_fields=tuple(
                    f["name"]
                    for f in latest.definition["fields"]
                    if isinstance(f["type"], dict) and f["type"].get("logicalType") == "uuid"
                ),
                flat_fields=_flat_fields(plain[latest.fingerprint]),
            )
            for alias in (event_type, latest.topic, latest.full_name):
                self._write_plans[alias] = plan

    def _write_plan(self, event_type: str) -> _WritePlan:
        plan = self._write_plans.get(event_type)
        if plan is None:  # another spelling ("Like"); not cached, callers may pass anything
            plan = self._write_plans[self.catalogue.latest(event_type).event_type]
        return plan

    def encode(self, event_type: str, record: dict[str, Any], *, validated: bool = False) -> bytes:
        """Validate `record` and write it with the latest version of `event_type`.

        `validated=True`: the caller has checked `record` against the schema already (ingest's
        compiled validator), so only the writer's own checks remain (it still raises
        InvalidRecordError on a value it cannot write)."""
        plan = self._write_plan(event_type)
        if not validated and not _fits_flat(plan, record):
            _validate(plan, record)  # raises, naming the field (or lets an odd fit through)
        out = BytesIO()
        out.write(plan.header)
        try:
            schemaless_writer(out, plan.schema, record, strict_allow_default=True)
        except (TypeError, ValueError, OverflowError, AttributeError, KeyError) as exc:
            raise InvalidRecordError(f"{plan.version.event_type}: {exc}") from exc
        return out.getvalue()

    def validate(self, event_type: str, record: dict[str, Any]) -> None:
        """Raise InvalidRecordError naming the first field that does not fit the schema."""
        _validate(self._write_plan(event_type), record)

    def decode(
        self, data: bytes | bytearray | memoryview | None
    ) -> tuple[SchemaVersion, dict[str, Any]]:
        """Read a message value into a latest-version record; returns (writer, record).

        Raises UnknownSchemaError or CorruptMessageError: both mean "send it to the DLQ".
        """
        try:
            plan = self._read_plans.get(data[:HEADER_SIZE])  # type: ignore[index,arg-type]
        except TypeError:  # not bytes: a tombstone (None), a bytearray or a memoryview
            if not isinstance(data, bytearray | memoryview):
                kind = type(data).__name__
                raise CorruptMessageError(f"message value is {kind}, not bytes") from None
            return self.decode(bytes(data))
        if plan is None:
            raise self._header_error(data)
        size = len(data)  # type: ignore[arg-type]  # bytes: the header lookup matched
        body = BytesIO(data)  # type: ignore[arg-type]
        body.seek(HEADER_SIZE)
        try:
            record: dict[str, Any] = schemaless_reader(  # type: ignore[assignment]
                body, plan.writer_schema, plan.reader_schema
            )
        except Exception as exc:  # any failure reading untrusted bytes means a corrupt body
            raise CorruptMessageError(
                f"corrupt {plan.writer.path.name} body: {type(exc).__name__}: {exc}"
            ) from exc
        if body.tell() != size:
            raise CorruptMessageError(
                f"{size - body.tell()} trailing byte(s) after a {plan.writer.path.name} body"
            )
        for name, default in plan.defaults:
            record[name] = default
        return plan.writer, record

    def _header_error(self, data: object) -> CodecError:
        if not isinstance(data, bytes):
            return CorruptMessageError(f"message value is {type(data).__name__}, not bytes")
        if len(data) < HEADER_SIZE:
            return CorruptMessageError(
                f"message of {len(data)} byte(s) is shorter than the {HEADER_SIZE}-byte header"
            )
        if data[:2] != MAGIC:
            return CorruptMessageError(
                f"bad magic {data[:2].hex()}: not Avro single-object encoding (c301)"
            )
        return UnknownSchemaError(
            f"unknown writer schema fingerprint {data[2:HEADER_SIZE].hex()}: "
            "is an .avsc missing from the schema folder?"
        )


def _plain_schema(definition: Any) -> dict[str, Any]:
    """Parse `definition` with every logicalType removed, so values stay int/str."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "logicalType"}
        if isinstance(node, list):
            return [strip(item) for item in node]
        return node

    return cast(dict[str, Any], fastavro.parse_schema(strip(definition)))


def _read_plan(
    writer: SchemaVersion, reader: SchemaVersion, plain: dict[bytes, dict[str, Any]]
) -> _ReadPlan:
    """Resolve without fastavro when the reader only adds scalar-defaulted fields (fast path)."""
    writer_schema = plain[writer.fingerprint]
    if writer is reader:
        return _ReadPlan(writer, writer_schema, None, ())
    defaults = _added_defaults(writer.definition, reader.definition)
    if defaults is not None:
        return _ReadPlan(writer, writer_schema, None, defaults)
    return _ReadPlan(writer, writer_schema, plain[reader.fingerprint], ())


def _added_defaults(writer: Any, reader: Any) -> tuple[tuple[str, Any], ...] | None:
    """The reader-only fields and their defaults, or None when real resolution is needed.

    The fast path holds when every writer field exists in the reader with the same type made
    of primitives only (no named types, no aliases) and every reader-only field has an
    immutable default.
    """

    def type_key(node: Any) -> str | None:
        def plain(n: Any) -> Any:
            if isinstance(n, dict):
                return {k: plain(v) for k, v in n.items() if k in ("type", "items", "values")}
            if isinstance(n, list):
                return [plain(x) for x in n]
            return n

        stripped = plain(node)
        flat = (
            stripped["type"]
            if isinstance(stripped, dict) and set(stripped) == {"type"}
            else stripped
        )
        branches = flat if isinstance(flat, list) else [flat]
        ok = all(isinstance(b, str) and b in _PRIMITIVES for b in branches)
        return json.dumps(flat) if ok else None

    reader_fields = {f["name"]: f for f in reader["fields"]}
    if any("aliases" in f for f in reader["fields"]):
        return None
    for wf in writer["fields"]:
        rf = reader_fields.get(wf["name"])
        if rf is None:
            return None
        key = type_key(wf["type"])
        if key is None or key != type_key(rf["type"]):
            return None
    writer_names = {f["name"] for f in writer["fields"]}
    added: list[tuple[str, Any]] = []
    for f in reader["fields"]:
        if f["name"] in writer_names:
            continue
        if "default" not in f or not isinstance(f["default"], _IMMUTABLE_DEFAULTS):
            return None
        added.append((f["name"], f["default"]))
    return tuple(added)


_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "null": (type(None),),
    "boolean": (bool,),
    "int": (int,),
    "long": (int,),
    "float": (int, float),
    "double": (int, float),
    "string": (str,),
    "bytes": (bytes,),
}


def _flat_fields(schema: dict[str, Any]) -> tuple[_FlatField, ...] | None:
    """Per-field type checks when every field is a primitive or a union of primitives."""
    fields: list[_FlatField] = []
    for f in schema["fields"]:
        declared = f["type"] if isinstance(f["type"], list) else [f["type"]]
        # {"type": "long"} (what is left of a logical type) is the primitive itself.
        branches: list[str] = []
        for branch in declared:
            name = branch.get("type") if isinstance(branch, dict) else branch
            if not isinstance(name, str) or name not in _PYTHON_TYPES:
                return None
            branches.append(name)
        types = tuple(dict.fromkeys(t for b in branches for t in _PYTHON_TYPES[b]))
        bits = 64 if "long" in branches else 32 if "int" in branches else 0
        fields.append(_FlatField(f["name"], types, "default" not in f, bits))
    return tuple(fields)


def _fits_flat(plan: _WritePlan, record: Any) -> bool:
    """True when `record` certainly fits a flat schema; False means "ask fastavro why".

    This is the hot path of every single-event request: it replaces fastavro's generic
    `validate` (several times slower) for records made of primitives only.
    """
    checks = plan.flat_fields
    if checks is None or type(record) is not dict or not record.keys() <= plan.field_names:
        return False
    for check in checks:
        value = record.get(check.name, _ABSENT)
        if value is _ABSENT:
            if check.required:
                return False
            continue
        if type(value) is bool and bool not in check.types:
            return False  # bool is an int subclass: never a number in Avro
        if not isinstance(value, check.types):
            return False
        if check.int_bits and type(value) is int:
            limit = 1 << (check.int_bits - 1)
            if not -limit <= value < limit:
                return False
    return _first_non_uuid(plan, record) is None


_ABSENT = object()


def _first_non_uuid(plan: _WritePlan, record: dict[str, Any]) -> str | None:
    """The first `uuid` field present in `record` whose value is not a UUID's text."""
    for name in plan.uuid_fields:
        if name not in record:
            continue
        try:
            uuid.UUID(record[name])
        except (TypeError, ValueError, AttributeError):
            return name
    return None


def _validate(plan: _WritePlan, record: Any) -> None:
    event_type = plan.version.event_type
    if not isinstance(record, dict):
        raise InvalidRecordError(f"{event_type}: a record must be a dict, got {type(record)}")
    unknown = record.keys() - plan.field_names
    if unknown:
        raise InvalidRecordError(f"{event_type}: unknown field(s) {', '.join(sorted(unknown))}")
    try:
        validate(record, plan.schema, raise_errors=True)
    except ValidationError as exc:
        first = exc.errors[0]
        name = str(getattr(first, "field", "?")).rsplit(".", 1)[-1]
        if name not in record:
            raise InvalidRecordError(f"{event_type}: field {name!r} is missing") from exc
        expected = first.schema
        if isinstance(expected, dict) and set(expected) == {"type"}:
            expected = expected["type"]
        raise InvalidRecordError(
            f"{event_type}: field {name!r}: {first.datum!r} is not of type {expected}"
        ) from exc
    bad = _first_non_uuid(plan, record)
    if bad is not None:
        raise InvalidRecordError(f"{event_type}: field {bad!r}: {record[bad]!r} is not a UUID")
