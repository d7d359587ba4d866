"""A second event type, `pageview` (topic `page_views`), that exists only as a schema: the
tests write it to a folder named by LOGSTREAM_SCHEMA_DIR, so nothing in logstream knows it.

It uses every Avro feature ingest validates: uuids, a timestamp-millis (also inside a
union), an optional union, defaults, a nested record with an enum, a named-type reference,
arrays, maps and fixed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PAGE_VIEW"]

PAGE_VIEW: dict[str, Any] = {
    "type": "record",
    "name": "PageView",
    "namespace": "acme.web",
    "doc": "A visitor saw a page.",
    "logstream.topic": "page_views",
    "logstream.version": 1,
    "logstream.key": "url",
    "logstream.timestamp": "occurred_at",
    "fields": [
        {"name": "event_id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "url", "type": "string", "logstream.max_length": 100},
        {"name": "visitor_id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "seconds", "type": "int", "doc": "Time on the page."},
        {"name": "referrer", "type": ["null", "string"], "default": None},
        {"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {
            "name": "first_seen",
            "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}],
            "default": None,
        },
        {
            "name": "page",
            "type": {
                "type": "record",
                "name": "Page",
                "fields": [
                    {"name": "title", "type": "string", "logstream.not_blank": True},
                    {"name": "referrer", "type": ["null", "string"], "default": None},
                    {
                        "name": "section",
                        "type": {
                            "type": "enum",
                            "name": "Section",
                            "symbols": ["NEWS", "SPORT", "OTHER"],
                        },
                    },
                ],
            },
        },
        {
            "name": "device",
            "type": {"type": "enum", "name": "Device", "symbols": ["DESKTOP", "MOBILE"]},
            "default": "DESKTOP",
        },
        {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
        {"name": "metrics", "type": {"type": "map", "values": "double"}, "default": {}},
        {"name": "sections_seen", "type": {"type": "array", "items": "Section"}, "default": []},
        {
            "name": "checksum",
            "type": ["null", {"type": "fixed", "name": "Md5", "size": 4}],
            "default": None,
        },
    ],
}
