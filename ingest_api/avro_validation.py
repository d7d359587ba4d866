"""An event type's `.avsc` compiled, once at startup, into the validator of what clients post.

Why compile: the ingest hot path must not interpret a schema per request. Each schema
becomes a pydantic `TypedDict` (validated in pydantic-core, in Rust) whose output is already
the Avro record (plain dicts, lists, ints and strings), and its JSON schema is the request
body documented in OpenAPI.

The rules, per Avro type (strict: no coercion, `true` is not a number, `"5"` not an int):
- record: a JSON object; unknown fields are refused; a field without a default is required;
  nested records are nested objects. A recursive record is accepted as any value and left
  to the codec to judge.
- `["null", T]` (an optional union): null or a T; general unions: any branch.
- a field with a `default` may be left out: the Avro default is written.
- array: a JSON array; map: a JSON object with any keys; enum: one of its symbols.
- int / long: integers within 32 / 64 bits; float / double: numbers.
- string (and a map key): valid UTF-8 (no unpaired surrogate), without the control
  characters `logstream.text_rules` refuses (C0 but TAB, LF, CR; DEL). `bytes` / `fixed`:
  a string of code points 0-255 (Avro's JSON encoding), `fixed` of exactly its size.
- `{"type": "string", "logicalType": "uuid"}`: any text form of a UUID, written in the
  canonical form (lower case, hyphens).
- `{"type": "long", "logicalType": "timestamp-millis"}`: an RFC 3339 date-time with an
  offset, or epoch milliseconds (see `ingest_api.timestamps`).
- Field attributes (not part of the canonical form, so fingerprints are unchanged):
  `"logstream.min_length"` / `"logstream.max_length"` bound a string's length,
  `"logstream.not_blank": true` refuses a string of white space only.

Two top-level fields are the API's, not the client's to omit: the `"logstream.timestamp"`
field (optional; absent or null means "now", and it is bounded by
`LOGSTREAM_INGEST_MAX_FUTURE_MS`: checked by the caller, which knows the clock) and the
event id field (optional; absent or null means "generate one").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NotRequired, Required, Union, cast
from uuid import UUID

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)
from typing_extensions import TypedDict  # pydantic needs it, not typing's, before 3.12

from ingest_api.timestamps import InvalidTimestampError, parse_time_value
from logstream.schemas import SchemaCatalogue, SchemaVersion
from logstream.text_rules import control_character_message, forbidden_control, shown_name

__all__ = [
    "MAX_LENGTH_ATTRIBUTE",
    "MIN_LENGTH_ATTRIBUTE",
    "NOT_BLANK_ATTRIBUTE",
    "EventModel",
    "compile_event_model",
    "compile_event_models",
]

MIN_LENGTH_ATTRIBUTE = "logstream.min_length"
MAX_LENGTH_ATTRIBUTE = "logstream.max_length"
NOT_BLANK_ATTRIBUTE = "logstream.not_blank"

_INT_BITS = {"int": 32, "long": 64}
_CONFIG = ConfigDict(extra="forbid", strict=True)
_TIME_EXAMPLES = ["2024-05-01T12:00:00Z", 1714564800000]
_TIME_JSON = {
    "anyOf": [{"type": "string", "format": "date-time"}, {"type": "integer", "minimum": 0}],
    "description": "An RFC 3339 date-time with offset, or epoch milliseconds.",
}
_OPTIONAL_TIME_JSON = {
    "anyOf": [*_TIME_JSON["anyOf"], {"type": "null"}],
    "description": "Event time: an RFC 3339 date-time with offset, or epoch milliseconds. "
    "Default: now. At most `LOGSTREAM_INGEST_MAX_FUTURE_MS` ahead of the server clock.",
}


@dataclass(frozen=True, slots=True)
class EventModel:
    """One event type as ingest accepts it: validation, key, timestamp and id fields."""

    event_type: str  # "like"
    route: str  # the catalogue topic: POST /v1/events/<route>
    version: SchemaVersion  # the latest: what ingest writes
    field_names: tuple[str, ...]
    key_field: str | None
    key_default: str | None  # the key field's Avro default, written when it is left out
    timestamp_field: str | None
    event_id_field: str | None
    adapter: TypeAdapter[dict[str, Any]] = field(repr=False)
    json_schema: dict[str, Any] = field(repr=False)  # the request body of one event
    complete: bool = True  # False: a recursive record left part of the check to the codec

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        """The Avro record of `data` (timestamp field still raw); raises ValidationError."""
        return self.adapter.validate_python(data)

    def key_of(self, record: dict[str, Any]) -> bytes | None:
        """The Kafka key of a validated record: its key field, UTF-8 (None: no key)."""
        if self.key_field is None:
            return None
        value = record.get(self.key_field, self.key_default)
        return value.encode() if value is not None else None

    def field_errors(self, exc: ValidationError, data: Any) -> list[tuple[str | None, str]]:
        """(field path, message) per problem: `page.referrer`, `tags.2`; union branch names
        pydantic adds to its locations are left out, and each path is reported once."""
        found: dict[str | None, str] = {}
        for err in exc.errors():
            path = _data_path(err.get("loc", ()), data)
            if path in found:
                continue
            found[path] = self._message(err, path)
        return list(found.items())

    def _message(self, err: Any, path: str | None) -> str:
        kind = err.get("type")
        if kind == "missing":
            return "is required"
        if kind == "extra_forbidden":
            if path is not None and "." not in path:
                fields = ", ".join(self.field_names)
                return f"is not a field of a {self.event_type} (fields: {fields})"
            return "is not a field of this record"
        return str(err.get("msg", "is invalid")).removeprefix("Value error, ")


def compile_event_model(version: SchemaVersion) -> EventModel:
    """Build the validator of `version` (normally the latest of its event type)."""
    definition = version.definition
    compiler = _Compiler(str(definition.get("namespace") or ""))
    top = compiler.record(
        definition,
        optional={f for f in (version.timestamp_field, version.event_id_field) if f},
        raw={version.timestamp_field} if version.timestamp_field else set(),
        title=f"{version.event_type.title().replace('_', '')}Create",
    )
    adapter: TypeAdapter[dict[str, Any]] = TypeAdapter(top)
    return EventModel(
        event_type=version.event_type,
        route=version.topic,
        version=version,
        field_names=tuple(f["name"] for f in definition["fields"]),
        key_field=version.key_field,
        key_default=next(
            (f.get("default") for f in definition["fields"] if f["name"] == version.key_field),
            None,
        ),
        timestamp_field=version.timestamp_field,
        event_id_field=version.event_id_field,
        adapter=adapter,
        json_schema=_inline_refs(adapter.json_schema()),
        complete=not compiler.recursive,
    )


def compile_event_models(catalogue: SchemaCatalogue) -> dict[str, EventModel]:
    """Event type -> its model, from the latest version of every type in `catalogue`."""
    return {t: compile_event_model(catalogue.latest(t)) for t in catalogue.event_types()}


class _Compiler:
    """Avro type -> pydantic annotation; remembers named types (records, enums, fixed)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.named: dict[str, Any] = {}
        self.building: set[str] = set()
        self.recursive = False  # a record refers to itself: that part is accepted as is

    def full_name(self, name: str, namespace: str | None) -> str:
        if "." in name:
            return name
        space = self.namespace if namespace is None else namespace
        return f"{space}.{name}" if space else name

    def record(
        self,
        node: Mapping[str, Any],
        *,
        optional: set[str] = frozenset(),  # type: ignore[assignment]
        raw: set[str] = frozenset(),  # type: ignore[assignment]
        title: str | None = None,
    ) -> Any:
        outer = self.namespace
        full = self.full_name(str(node["name"]), node.get("namespace"))
        self.namespace = full.rpartition(".")[0]
        self.building.add(full)
        try:
            fields: dict[str, Any] = {}
            for f in node.get("fields", []):
                name = f["name"]
                extra: dict[str, Any] = {}
                if "doc" in f:
                    extra["description"] = f["doc"]
                if name in raw:  # parsed by the caller (it needs "now"); null means now
                    annotation: Any = Annotated[Any, WithJsonSchema(_OPTIONAL_TIME_JSON)]
                    extra["examples"] = _TIME_EXAMPLES
                else:
                    annotation = self.annotation(f["type"], f)
                    if name in optional:
                        annotation = annotation | None
                if "default" in f:
                    extra["json_schema_extra"] = {"default": f["default"]}
                if extra:
                    annotation = Annotated[annotation, Field(**extra)]
                wrapper = NotRequired if name in optional or "default" in f else Required
                fields[name] = wrapper[annotation]
            typed = TypedDict(title or full.replace(".", "_"), fields)  # type: ignore[misc]
            typed.__pydantic_config__ = _CONFIG  # type: ignore[attr-defined]
            if "doc" in node:
                typed.__doc__ = node["doc"]
        finally:
            self.building.discard(full)
            self.namespace = outer
        self.named[full] = typed
        return typed

    def annotation(self, node: Any, attrs: Mapping[str, Any]) -> Any:
        """The annotation of one Avro type; `attrs` are the enclosing field's attributes."""
        if isinstance(node, list):
            branches = [self.annotation(branch, attrs) for branch in node]
            return Union[tuple(branches)]  # noqa: UP007  (built at run time)
        if isinstance(node, str):
            return self.primitive(node, attrs)
        kind = node.get("type")
        logical = node.get("logicalType")
        if kind == "string" and logical == "uuid":
            return _UUID_TEXT
        if kind in ("long", "int") and logical == "timestamp-millis":
            return _TIMESTAMP_MILLIS
        if kind == "record" or kind == "error":
            return self.record(node)
        if kind == "enum":
            self.named[self.full_name(node["name"], node.get("namespace"))] = literal = Literal[
                tuple(node["symbols"])
            ]
            return literal
        if kind == "fixed":
            fixed = _bytes_text(int(node["size"]))
            self.named[self.full_name(node["name"], node.get("namespace"))] = fixed
            return fixed
        if kind == "array":
            return list[self.annotation(node["items"], {})]  # type: ignore[misc]
        if kind == "map":
            values = self.annotation(node["values"], {})
            return dict[_MAP_KEY, values]  # type: ignore[valid-type]
        if isinstance(kind, str | list | dict):
            return self.annotation(kind, {**attrs, **node})
        raise ValueError(f"unsupported Avro type {node!r}")

    def primitive(self, name: str, attrs: Mapping[str, Any]) -> Any:
        if name == "null":
            return None
        if name == "boolean":
            return bool
        if name in _INT_BITS:
            limit = 1 << (_INT_BITS[name] - 1)
            return Annotated[int, Field(ge=-limit, le=limit - 1)]
        if name in ("float", "double"):
            return float
        if name == "string":
            return _text(attrs)
        if name == "bytes":
            return _bytes_text(None)
        full = self.full_name(name, None)
        if full in self.building:  # a recursive reference: left to the codec
            self.recursive = True
            return Any
        try:
            return self.named[full]
        except KeyError:
            raise ValueError(f"unknown Avro type {name!r}") from None


def _utf8(value: str) -> str:
    """Reject what JSON allows but UTF-8 (Avro strings, Kafka keys) cannot carry, and the
    control characters no door into the log lets in (one rule: `logstream.text_rules`)."""
    if value.isprintable():  # the hot path, in C: no control character, no surrogate
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            "contains an unpaired surrogate (\\ud800-\\udfff): not valid UTF-8"
        ) from None
    if forbidden_control(value) is not None:
        raise ValueError(control_character_message(value))
    return value


def _non_blank_utf8(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return _utf8(value)


def _text(attrs: Mapping[str, Any]) -> Any:
    """A string, with the field's length and blankness attributes applied."""
    bounds = {
        key: attrs[attribute]
        for key, attribute in (
            ("min_length", MIN_LENGTH_ATTRIBUTE),
            ("max_length", MAX_LENGTH_ATTRIBUTE),
        )
        if isinstance(attrs.get(attribute), int)
    }
    check = _non_blank_utf8 if attrs.get(NOT_BLANK_ATTRIBUTE) is True else _utf8
    # The pattern only documents the control-character rule in the JSON schema (OpenAPI);
    # `check` enforces it, faster than a pattern would.
    return Annotated[str, Field(**bounds, json_schema_extra=_NO_CONTROLS), AfterValidator(check)]


# C0 controls but TAB, LF, CR, and DEL: refused (logstream.text_rules), stated for clients.
_NO_CONTROLS: dict[str, JsonValue] = {
    "pattern": "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f]*$"
}
_MAP_KEY = Annotated[str, AfterValidator(_utf8)]  # a map key is an Avro string too

_BYTES_TEXT = "bytes are a string of code points 0-255 (\\u0000-\\u00ff)"


def _bytes_text(size: int | None) -> Any:
    """Avro's JSON form of bytes: one code point 0-255 per byte (or bytes, from binary)."""

    def to_bytes(value: Any) -> bytes:
        if isinstance(value, bytes):
            data = value
        elif isinstance(value, str):
            try:
                data = value.encode("latin-1")
            except UnicodeEncodeError:
                raise ValueError(_BYTES_TEXT) from None
        else:
            raise ValueError(_BYTES_TEXT)
        if size is not None and len(data) != size:
            raise ValueError(f"must be exactly {size} byte(s), not {len(data)}")
        return data

    json_schema: dict[str, Any] = {"type": "string"}
    if size is not None:
        json_schema.update(minLength=size, maxLength=size)
    return Annotated[bytes, PlainValidator(to_bytes), WithJsonSchema(json_schema)]


def _time_millis(value: Any) -> int:
    try:
        millis = parse_time_value(value)
    except InvalidTimestampError as exc:
        raise ValueError(str(exc)) from None
    if not -(2**63) <= millis < 2**63:
        raise ValueError(f"{millis} is out of range of an Avro long")
    return millis


_UUID_TEXT = Annotated[UUID, Field(strict=False), AfterValidator(str)]
_TIMESTAMP_MILLIS = Annotated[int, PlainValidator(_time_millis), WithJsonSchema(dict(_TIME_JSON))]


def _data_path(loc: tuple[Any, ...], data: Any) -> str | None:
    """The dotted path of a pydantic error location, walking the data itself so that the
    names pydantic gives union branches (`str`, `function-after[...]`) are skipped."""
    parts: list[str] = []
    current = data
    for i, part in enumerate(loc):
        if isinstance(current, dict):
            if part in current:
                parts.append(shown_name(str(part)))
                current = current[part]
            elif i == len(loc) - 1:  # a missing field: named, though absent
                parts.append(shown_name(str(part)))
        elif isinstance(current, list) and isinstance(part, int):
            parts.append(str(part))
            current = current[part] if 0 <= part < len(current) else None
        else:
            break
    return ".".join(parts) or None


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema without `$defs`: each `$ref` replaced by its definition, so it can be
    embedded anywhere in the OpenAPI document (named types are never recursive here)."""
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                rest = {k: inline(v) for k, v in node.items() if k != "$ref"}
                return {**inline(defs[ref.removeprefix("#/$defs/")]), **rest}
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return cast(dict[str, Any], inline(schema))
