"""`GET /v1/schemas` and `logstream contract`: the schema catalogue as one JSON document.

Why a document of our own beside AsyncAPI: a client that only wants "which fingerprints can
I see on `likes`, and which `.avsc` decodes each" gets it in one flat lookup, with the
`.avsc` JSON exactly as in the file (so fingerprints computed from it match ours).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from logstream.contract.wire import ENCODING, PARTITIONING, TIMESTAMP, header_hex
from logstream.schemas import SchemaCatalogue, SchemaVersion
from logstream.settings import Settings
from logstream.topics import dlq_topic

__all__ = ["deployed_topics", "schemas_document", "secure_protocol"]


def deployed_topics(settings: Settings, catalogue: SchemaCatalogue) -> dict[str, str]:
    """Event type -> topic name in this deployment (the catalogue's name behind the prefix)."""
    return {t: settings.topic_prefix + catalogue.topic_for(t) for t in catalogue.event_types()}


def secure_protocol(settings: Settings) -> bool:
    """True when clients reach the brokers over TLS (AsyncAPI's `kafka-secure`)."""
    return (settings.kafka_security_protocol or "").upper() in ("SSL", "SASL_SSL")


def schemas_document(catalogue: SchemaCatalogue, topics: Mapping[str, str]) -> dict[str, Any]:
    """Every event type with its topic, key and timestamp fields and all its versions.

    `topics` maps each event type to the topic it is written to here (prefix or override
    applied); the `.avsc` files keep the catalogue's own name in `"logstream.topic"`.
    """
    return {
        "encoding": ENCODING,
        "partitioning": PARTITIONING,
        "timestamp": TIMESTAMP,
        "event_types": [
            _event_type(catalogue, t, topics.get(t, catalogue.topic_for(t)))
            for t in catalogue.event_types()
        ],
    }


def _event_type(catalogue: SchemaCatalogue, event_type: str, topic: str) -> dict[str, Any]:
    versions = catalogue.versions(event_type)
    latest = versions[-1]
    return {
        "event_type": event_type,
        "record": latest.full_name,
        "topic": topic,
        "dlq_topic": dlq_topic(topic),
        "key_field": latest.key_field,
        "timestamp_field": latest.timestamp_field,
        "latest_version": latest.version,
        "versions": [_version(v) for v in versions],
    }


def _version(version: SchemaVersion) -> dict[str, Any]:
    return {
        "version": version.version,
        "fingerprint": version.fingerprint_hex,
        "header": header_hex(version),
        "file": version.path.name,
        "avsc": version.definition,
    }
