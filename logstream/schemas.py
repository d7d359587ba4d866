"""The schema catalogue: every `.avsc` ever written to the log, by event type, version and
fingerprint, so that any message in the log can be decoded, however old.

Each `.avsc` is a record carrying custom top-level attributes: `"logstream.topic"` and
`"logstream.version"` (required) map event type -> topic without code; `"logstream.key"` and
`"logstream.timestamp"` (optional) name the field that is the Kafka key and the one that is
the record timestamp, so the machine-readable contract (`logstream.contract`) states them
from the `.avsc` alone; `"logstream.event_id"` (optional) names the uuid field ingest fills
with a generated id (default: a `uuid` field called `event_id`, if there is one). None of
them is part of the parsing canonical form, so they do not change the fingerprint.

A catalogue may be read from several folders (`LOGSTREAM_SCHEMA_DIR=a:b`, separated like
`PATH`), so a user's event types can sit beside the built-in ones without copying them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, cast

import avro.schema
import fastavro
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityType,
    lookup_writer_field,
)
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from logstream.errors import ConfigError, UnknownSchemaError

__all__ = [
    "EVENT_ID_ATTRIBUTE",
    "KEY_ATTRIBUTE",
    "TIMESTAMP_ATTRIBUTE",
    "TOPIC_ATTRIBUTE",
    "VERSION_ATTRIBUTE",
    "CatalogueError",
    "SchemaCatalogue",
    "SchemaVersion",
    "check_compatibility",
    "schema_folders",
]

TOPIC_ATTRIBUTE = "logstream.topic"
VERSION_ATTRIBUTE = "logstream.version"
KEY_ATTRIBUTE = "logstream.key"
TIMESTAMP_ATTRIBUTE = "logstream.timestamp"
EVENT_ID_ATTRIBUTE = "logstream.event_id"
DEFAULT_EVENT_ID_FIELD = "event_id"
_FILE_VERSION = re.compile(r"\.v(\d+)\.avsc$")


class CatalogueError(ConfigError):
    """The schema folder cannot form a catalogue; `problems` holds one line per fault."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One `.avsc` file: a version of an event type, as the log knows it (by fingerprint)."""

    event_type: str
    version: int
    topic: str
    full_name: str
    canonical_form: str = field(repr=False)
    fingerprint: bytes  # 8 raw bytes: CRC-64-AVRO, little-endian, as in the wire header
    path: Path
    schema: dict[str, Any] = field(compare=False, repr=False)  # fastavro.parse_schema output
    definition: Mapping[str, Any] = field(compare=False, repr=False)  # the JSON of the file
    key_field: str | None = None  # "logstream.key": the field written as the Kafka key
    timestamp_field: str | None = None  # "logstream.timestamp": the record timestamp's field
    event_id_field: str | None = None  # "logstream.event_id": the uuid ingest may generate

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()


class SchemaCatalogue:
    """All versions of all event types; immutable once loaded."""

    def __init__(self, versions: list[SchemaVersion], path: Path | None = None) -> None:
        problems = _structure_problems(versions)
        if problems:
            raise CatalogueError(problems)
        self.path = path
        by_type: dict[str, list[SchemaVersion]] = {}
        for v in versions:
            by_type.setdefault(v.event_type, []).append(v)
        self._versions = {
            t: tuple(sorted(vs, key=lambda v: v.version)) for t, vs in by_type.items()
        }
        self._by_fingerprint = {v.fingerprint: v for v in versions}
        self._type_for_topic = {vs[-1].topic: t for t, vs in self._versions.items()}
        # Every spelling a caller may use for an event type: "like", "likes", the full name.
        self._aliases: dict[str, str] = {}
        for t, vs in self._versions.items():
            self._aliases.update({t: t, vs[-1].topic.lower(): t, vs[-1].full_name.lower(): t})

    @classmethod
    def load(cls, path: Path | str | Sequence[Path | str]) -> SchemaCatalogue:
        """Read every `*.avsc` in `path`: one folder, several (a sequence, or one string of
        folders separated by `os.pathsep`, like `PATH`); all faults are reported at once in
        a CatalogueError. `self.path` is the first folder."""
        folders = schema_folders(path)
        versions: list[SchemaVersion] = []
        problems: list[str] = []
        for folder in folders:
            if not folder.is_dir():
                problems.append(f"{folder}: not a folder of .avsc files")
                continue
            files = sorted(folder.glob("*.avsc"))
            if not files:
                problems.append(f"{folder}: no .avsc files")
            for file in files:
                try:
                    versions.append(_load_file(file))
                except ValueError as exc:
                    problems.append(f"{file.name}: {exc}")
        if problems:
            raise CatalogueError(problems)
        return cls(versions, folders[0])

    def _event_type(self, name: str) -> str:
        try:
            return self._aliases[name.lower()]
        except KeyError:
            known = ", ".join(sorted(self._versions))
            raise UnknownSchemaError(f"unknown event type {name!r} (known: {known})") from None

    def event_types(self) -> list[str]:
        return sorted(self._versions)

    def versions(self, event_type: str) -> tuple[SchemaVersion, ...]:
        """Oldest first; accepts the event type, its topic or the record's full name."""
        return self._versions[self._event_type(event_type)]

    def latest(self, event_type: str) -> SchemaVersion:
        """The version producers write and consumers read into."""
        return self.versions(event_type)[-1]

    def topic_for(self, event_type: str) -> str:
        return self.latest(event_type).topic

    def event_type_for_topic(self, topic: str) -> str:
        try:
            return self._type_for_topic[topic]
        except KeyError:
            raise UnknownSchemaError(f"no event type is written to topic {topic!r}") from None

    def topics(self) -> list[str]:
        return sorted(self._type_for_topic)

    def by_fingerprint(self, fp: bytes) -> SchemaVersion:
        """The writer schema of a message, from the 8 bytes of its header."""
        try:
            return self._by_fingerprint[fp]
        except KeyError:
            raise UnknownSchemaError(
                f"unknown writer schema fingerprint {fp.hex()}: is an .avsc missing?"
            ) from None

    def __iter__(self) -> Iterator[SchemaVersion]:
        for t in sorted(self._versions):
            yield from self._versions[t]

    def __len__(self) -> int:
        return len(self._by_fingerprint)


def schema_folders(path: Path | str | Sequence[Path | str]) -> list[Path]:
    """The folders `path` names: a sequence as is; a single path that is not itself a folder
    is split on `os.pathsep` (`LOGSTREAM_SCHEMA_DIR=/opt/avro_schemas:/srv/my_schemas`)."""
    if isinstance(path, Path | str):
        single = Path(path)
        if single.is_dir() or os.pathsep not in str(path):
            return [single]
        return [Path(part) for part in str(path).split(os.pathsep) if part]
    folders = [Path(p) for p in path]
    if not folders:
        raise CatalogueError(["no schema folder given"])
    return folders


def _load_file(file: Path) -> SchemaVersion:
    """Parse one `.avsc`; a ValueError says what is wrong with it."""
    try:
        definition = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not readable JSON: {exc}") from exc
    if not isinstance(definition, dict) or definition.get("type") != "record":
        raise ValueError("top level must be an Avro record")
    topic = definition.get(TOPIC_ATTRIBUTE)
    version = definition.get(VERSION_ATTRIBUTE)
    if not isinstance(topic, str) or not topic:
        raise ValueError(f'missing "{TOPIC_ATTRIBUTE}": "<topic>"')
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f'missing "{VERSION_ATTRIBUTE}": <integer >= 1>')
    named = _FILE_VERSION.search(file.name)
    if named and int(named.group(1)) != version:
        raise ValueError(f'file name says v{named.group(1)} but "{VERSION_ATTRIBUTE}" is {version}')
    try:
        parsed = cast(dict[str, Any], fastavro.parse_schema(json.loads(json.dumps(definition))))
    except Exception as exc:  # fastavro raises several types for a bad schema
        raise ValueError(f"invalid Avro schema: {exc}") from exc
    canonical = to_parsing_canonical_form(parsed)
    full_name = str(parsed["name"])
    field_types = {f["name"]: f["type"] for f in definition.get("fields", [])}
    key_field = _field_attribute(definition, KEY_ATTRIBUTE, field_types, "string")
    timestamp_field = _field_attribute(definition, TIMESTAMP_ATTRIBUTE, field_types, "long")
    event_id_field = _event_id_field(definition, field_types)
    return SchemaVersion(
        event_type=full_name.rsplit(".", 1)[-1].lower(),
        version=version,
        topic=topic,
        full_name=full_name,
        canonical_form=canonical,
        fingerprint=bytes.fromhex(_fastavro_fingerprint(canonical, "CRC-64-AVRO")),
        path=file,
        schema=parsed,
        definition=definition,
        key_field=key_field,
        timestamp_field=timestamp_field,
        event_id_field=event_id_field,
    )


def _event_id_field(definition: Mapping[str, Any], field_types: Mapping[str, Any]) -> str | None:
    """The `"logstream.event_id"` field (a `uuid` string), else a uuid field named
    `event_id`, else None (the event type has no id ingest could generate)."""
    if EVENT_ID_ATTRIBUTE in definition:
        name = _field_attribute(definition, EVENT_ID_ATTRIBUTE, field_types, "string")
        if name is not None and not _is_uuid(field_types[name]):
            raise ValueError(f'"{EVENT_ID_ATTRIBUTE}": field {name!r} must be a uuid string')
        return name
    declared = field_types.get(DEFAULT_EVENT_ID_FIELD)
    return DEFAULT_EVENT_ID_FIELD if _is_uuid(declared) else None


def _is_uuid(declared: Any) -> bool:
    return (
        isinstance(declared, dict)
        and declared.get("type") == "string"
        and declared.get("logicalType") == "uuid"
    )


def _field_attribute(
    definition: Mapping[str, Any], attribute: str, field_types: Mapping[str, Any], base: str
) -> str | None:
    """The field an optional attribute names; it must exist and be of Avro type `base`
    (a key is a string, a timestamp a long), else a ValueError says which."""
    name = definition.get(attribute)
    if name is None:
        return None
    if not isinstance(name, str) or name not in field_types:
        raise ValueError(f'"{attribute}": {name!r} is not a field of the record')
    declared = field_types[name]
    actual = declared.get("type") if isinstance(declared, dict) else declared
    if actual != base:
        raise ValueError(f'"{attribute}": field {name!r} must be a {base}, not {declared!r}')
    return name


def _structure_problems(versions: list[SchemaVersion]) -> list[str]:
    """Faults that make lookups ambiguous: duplicate versions, fingerprints, names or topics."""
    problems: list[str] = []
    by_type: dict[str, list[SchemaVersion]] = {}
    for v in versions:
        by_type.setdefault(v.event_type, []).append(v)
    seen_fp: dict[bytes, SchemaVersion] = {}
    for v in versions:
        other = seen_fp.setdefault(v.fingerprint, v)
        if other is not v:
            problems.append(
                f"{v.path.name} and {other.path.name}: same canonical form (fingerprint "
                f"{v.fingerprint.hex()}): a new version must change the schema"
            )
    topic_owner: dict[str, str] = {}
    for event_type, vs in sorted(by_type.items()):
        vs.sort(key=lambda v: v.version)
        first = vs[0]
        for prev, cur in pairwise(vs):
            if cur.version == prev.version:
                problems.append(
                    f"{prev.path.name} and {cur.path.name}: both are version {cur.version} "
                    f"of {event_type!r}"
                )
        for v in vs[1:]:
            if v.topic != first.topic:
                problems.append(
                    f"{v.path.name}: topic {v.topic!r} differs from {first.path.name}'s "
                    f"{first.topic!r}: an event type keeps its topic forever"
                )
            if v.full_name != first.full_name:
                problems.append(
                    f"{v.path.name}: record {v.full_name} differs from {first.path.name}'s "
                    f"{first.full_name} (same event type {event_type!r})"
                )
        owner = topic_owner.setdefault(first.topic, event_type)
        if owner != event_type:
            problems.append(
                f"topic {first.topic!r} is claimed by both {owner!r} and {event_type!r}"
            )
    return problems


def check_compatibility(catalogue: SchemaCatalogue) -> list[str]:
    """Every version must read data written with every older one; returns the faults found."""
    problems: list[str] = []
    for event_type in catalogue.event_types():
        versions = catalogue.versions(event_type)
        parsed = {v.version: avro.schema.parse(json.dumps(v.definition)) for v in versions}
        for i, reader in enumerate(versions):
            for writer in versions[:i]:
                for fault in _read_faults(parsed[reader.version], parsed[writer.version]):
                    problems.append(
                        f"{reader.path.name} cannot read data written with "
                        f"{writer.path.name}: {fault}"
                    )
    return problems


def _read_faults(reader: avro.schema.Schema, writer: avro.schema.Schema) -> list[str]:
    """Ask Avro's own checker, then re-ask per field so each fault names its field."""
    checker = ReaderWriterCompatibilityChecker()
    verdict = checker.get_compatibility(reader, writer)
    if verdict.compatibility is not SchemaCompatibilityType.incompatible:
        return []
    faults: list[str] = []
    if isinstance(reader, avro.schema.RecordSchema) and isinstance(
        writer, avro.schema.RecordSchema
    ):
        for reader_field in reader.fields:
            writer_field = lookup_writer_field(writer, reader_field)
            if writer_field is None:
                if not reader_field.has_default:
                    faults.append(
                        f"field {reader_field.name!r} is new and has no default "
                        "(add one, e.g. a null-union with default null)"
                    )
                continue
            result = ReaderWriterCompatibilityChecker().get_compatibility(
                reader_field.type, writer_field.type
            )
            if result.compatibility is SchemaCompatibilityType.incompatible:
                faults.append(f"field {reader_field.name!r}: {'; '.join(sorted(result.messages))}")
    if not faults:  # e.g. a record rename: report Avro's own words and locations
        where = ", ".join(sorted(verdict.locations))
        faults.append(f"{'; '.join(sorted(verdict.messages))} (at {where})")
    return faults
