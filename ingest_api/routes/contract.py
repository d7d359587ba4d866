"""`GET /v1/schemas` and `GET /asyncapi.json`: the topic contract, machine-readable.

Both are built from the schema catalogue this process loaded and the topics it writes to
(prefix and overrides applied), so they describe exactly what this ingest writes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ingest_api.access import sees_internals
from ingest_api.deps import state_of
from ingest_api.responses import FastJSONResponse
from logstream.contract import asyncapi_document, schemas_document, secure_protocol

__all__ = ["router"]

router = APIRouter(tags=["contract"])

_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"schema": {"type": "object"}}}},
}


@router.get("/v1/schemas", responses=_DOC)
async def get_schemas(request: Request) -> JSONResponse:
    """Every event type: topic, DLQ topic, key and timestamp fields, and every version's
    `.avsc` with its fingerprint and value header."""
    state = state_of(request)
    return FastJSONResponse(schemas_document(state.codec.catalogue, state.topics))


@router.get("/asyncapi.json", responses=_DOC)
async def get_asyncapi(request: Request) -> JSONResponse:
    """The topics as an AsyncAPI 3.0 document (channels, keys, headers, Avro payloads);
    the Kafka servers (bootstrap addresses) only for `admin` keys."""
    state = state_of(request)
    settings = state.settings
    document = asyncapi_document(
        state.codec.catalogue,
        state.topics,
        bootstrap_servers=settings.bootstrap_servers if sees_internals(request) else None,
        secure=secure_protocol(settings),
    )
    return FastJSONResponse(document)
