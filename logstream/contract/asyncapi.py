"""The topic contract as an AsyncAPI 3.0 document.

One channel per event topic and one for its dead-letter twin; one message per schema
version (payload: the `.avsc` itself, `schemaFormat` Avro), so a generator or catalogue
reading the document sees every writer schema a reader can meet, not only the latest.
What AsyncAPI has no field for (the single-object framing, the partitioner, the
timestamp rule) is said in descriptions and repeated as data in `x-logstream-*` extensions.

The document is validated against the official AsyncAPI 3.0.0 JSON Schema in the tests
(`tests/contract/`), and every `$ref` in it is checked to resolve.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from logstream.contract.wire import (
    DLQ_HEADERS,
    ENCODING,
    ENCODING_TEXT,
    PARTITIONING,
    TIMESTAMP,
    TIMESTAMP_RULE,
    header_hex,
)
from logstream.schemas import SchemaCatalogue, SchemaVersion
from logstream.topics import EVENT_TOPIC_CONFIG, dlq_topic

__all__ = ["ASYNCAPI_VERSION", "AVRO_SCHEMA_FORMAT", "BINARY_CONTENT_TYPE", "asyncapi_document"]

ASYNCAPI_VERSION = "3.0.0"
AVRO_SCHEMA_FORMAT = "application/vnd.apache.avro+json;version=1.9.0"
BINARY_CONTENT_TYPE = "avro/binary"
KAFKA_BINDING_VERSION = "0.5.0"


def asyncapi_document(
    catalogue: SchemaCatalogue,
    topics: Mapping[str, str],
    *,
    bootstrap_servers: str | None = None,
    secure: bool = False,
) -> dict[str, Any]:
    """The AsyncAPI document of every event type in `catalogue`.

    `topics` maps event type -> topic in this deployment; `bootstrap_servers`, when given,
    becomes one `kafka` (or `kafka-secure`) server per host.
    """
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for event_type in catalogue.event_types():
        versions = catalogue.versions(event_type)
        topic = topics.get(event_type, catalogue.topic_for(event_type))
        channel_id = catalogue.topic_for(event_type)  # stable whatever the prefix
        dlq_id = f"{channel_id}_dlq"
        for version in versions:
            messages[_message_id(version)] = _event_message(version)
        messages[f"{event_type}.dead_letter"] = _dead_letter_message(event_type)
        channels[channel_id] = _event_channel(versions, topic, dlq_id)
        channels[dlq_id] = _dlq_channel(event_type, topic, dlq_id)
        operations.update(_operations(event_type, versions, channel_id, dlq_id))
    latest = ", ".join(f"{t}.v{catalogue.latest(t).version}" for t in catalogue.event_types())
    document: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "logstream event topics",
            "version": latest,
            "description": (
                "The public message format of the logstream event log: one Kafka topic per "
                "event type, kept forever, and its dead-letter twin. Every value is "
                f"{ENCODING_TEXT}"
            ),
        },
        "defaultContentType": BINARY_CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }
    if bootstrap_servers:
        document["servers"] = _servers(bootstrap_servers, secure)
    return document


def _message_id(version: SchemaVersion) -> str:
    return f"{version.event_type}.v{version.version}"


def _servers(bootstrap_servers: str, secure: bool) -> dict[str, Any]:
    hosts = [h.strip() for h in bootstrap_servers.split(",") if h.strip()]
    return {
        f"broker{i}": {
            "host": host,
            "protocol": "kafka-secure" if secure else "kafka",
            "description": "A bootstrap server of the Kafka cluster that holds the log.",
        }
        for i, host in enumerate(hosts, start=1)
    }


def _event_channel(versions: tuple[SchemaVersion, ...], topic: str, dlq_id: str) -> dict[str, Any]:
    latest = versions[-1]
    key = latest.key_field or "(none declared)"
    stamp = latest.timestamp_field or "(none declared)"
    return {
        "address": topic,
        "title": f"{latest.event_type} events",
        "description": (
            f"Every {latest.full_name} event, kept forever. Key: the `{key}` field, UTF-8; "
            f"partition: {PARTITIONING['formula']} ({PARTITIONING['compatible_with']}). "
            f"Timestamp: `{stamp}`. {TIMESTAMP_RULE} Headers: none required; readers must "
            f"ignore unknown headers. Messages that a view cannot decode go to the channel "
            f"`{dlq_id}` ({dlq_topic(topic)})."
        ),
        "messages": {
            _message_id(v): {"$ref": f"#/components/messages/{_message_id(v)}"} for v in versions
        },
        "bindings": {
            "kafka": {
                "topic": topic,
                "topicConfiguration": _topic_configuration(),
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
        "x-logstream-event-type": latest.event_type,
        "x-logstream-key-field": latest.key_field,
        "x-logstream-timestamp-field": latest.timestamp_field,
        "x-logstream-timestamp": TIMESTAMP,
        "x-logstream-partitioning": PARTITIONING,
        "x-logstream-encoding": ENCODING,
        "x-logstream-dead-letter-channel": dlq_id,
    }


def _dlq_channel(event_type: str, topic: str, dlq_id: str) -> dict[str, Any]:
    message_id = f"{event_type}.dead_letter"
    return {
        "address": dlq_topic(topic),
        "title": f"{event_type} dead letters",
        "description": (
            f"Messages of {topic} that a view could not decode or apply (undecodable bytes, "
            "an unknown fingerprint), copied byte for byte with their original key and "
            "timestamp, plus headers naming the error and the origin."
        ),
        "messages": {message_id: {"$ref": f"#/components/messages/{message_id}"}},
        "bindings": {
            "kafka": {
                "topic": dlq_topic(topic),
                "topicConfiguration": _topic_configuration(),
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
        "x-logstream-dead-letter-of": topic,
        "x-logstream-channel-id": dlq_id,
    }


def _topic_configuration() -> dict[str, Any]:
    return {
        "cleanup.policy": [EVENT_TOPIC_CONFIG["cleanup.policy"]],
        "retention.ms": int(EVENT_TOPIC_CONFIG["retention.ms"]),
        "retention.bytes": int(EVENT_TOPIC_CONFIG["retention.bytes"]),
        "message.timestamp.type": EVENT_TOPIC_CONFIG["message.timestamp.type"],
    }


def _event_message(version: SchemaVersion) -> dict[str, Any]:
    key = version.key_field
    return {
        "name": _message_id(version),
        "title": f"{version.full_name} v{version.version}",
        "summary": (
            f"Written with {version.path.name}; value header {header_hex(version)} "
            f"(fingerprint {version.fingerprint_hex})."
        ),
        "description": ENCODING_TEXT,
        "contentType": BINARY_CONTENT_TYPE,
        "headers": {
            "type": "object",
            "description": "No header is required; readers must ignore unknown headers.",
        },
        "payload": {"schemaFormat": AVRO_SCHEMA_FORMAT, "schema": dict(version.definition)},
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "description": (
                        f"The event's `{key}` field, UTF-8 encoded."
                        if key
                        else "No key field is declared for this event type."
                    ),
                },
                "schemaIdLocation": "payload",
                "schemaIdPayloadEncoding": "avro-single-object",
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
        "x-logstream-version": version.version,
        "x-logstream-fingerprint": version.fingerprint_hex,
        "x-logstream-header": header_hex(version),
        "x-logstream-timestamp-field": version.timestamp_field,
    }


def _dead_letter_message(event_type: str) -> dict[str, Any]:
    return {
        "name": f"{event_type}.dead_letter",
        "title": f"A {event_type} message no view could apply",
        "description": (
            "The original value, byte for byte (often not valid single-object Avro: that is "
            "why it is here), with the original key and record timestamp."
        ),
        "contentType": "application/octet-stream",
        "headers": {
            "type": "object",
            "required": sorted(DLQ_HEADERS),
            "properties": {
                name: {"type": "string", "description": text} for name, text in DLQ_HEADERS.items()
            },
        },
        "payload": {"type": "string", "format": "binary"},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": "The original message's key."},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _operations(
    event_type: str, versions: tuple[SchemaVersion, ...], channel_id: str, dlq_id: str
) -> dict[str, Any]:
    latest = _message_id(versions[-1])
    every = [{"$ref": f"#/channels/{channel_id}/messages/{_message_id(v)}"} for v in versions]
    dead = {"$ref": f"#/channels/{dlq_id}/messages/{event_type}.dead_letter"}
    return {
        f"write_{event_type}": {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": "Ingest and import append events, always with the latest version.",
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{latest}"}],
        },
        f"read_{event_type}": {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": "Views read every version ever written, resolved to the latest.",
            "messages": every,
        },
        f"dead_letter_{event_type}": {
            "action": "send",
            "channel": {"$ref": f"#/channels/{dlq_id}"},
            "summary": "Views park what they cannot decode or apply.",
            "messages": [dead],
        },
    }
