"""The topic contract as data: what the README's "Message format" says, built from the
schema catalogue so that it can never drift from the `.avsc` files.

- `schemas_document`: every event type, its topic, key and timestamp fields, and every
  version's `.avsc` and fingerprint (`GET /v1/schemas`, `logstream contract`).
- `asyncapi_document`: the same as an AsyncAPI 3.0 document (`GET /asyncapi.json`,
  `logstream contract --asyncapi`), for code generators and catalogues.
"""

from __future__ import annotations

from logstream.contract.asyncapi import asyncapi_document
from logstream.contract.schemas_doc import deployed_topics, schemas_document, secure_protocol

__all__ = ["asyncapi_document", "deployed_topics", "schemas_document", "secure_protocol"]
