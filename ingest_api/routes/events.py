"""`POST /v1/events/<topic>` and `/<topic>/batch` for every event type of the catalogue.

The routes are built per event type when the app is created, from the type's compiled
model (`ingest_api.avro_validation`), so each has its own OpenAPI entry with the JSON schema
of its `.avsc`; `likes` is one of them.

A 202 means the broker acknowledged every event in it (acks=all, idempotent producer).
A batch is validated whole before anything is produced: one bad event, nothing written.
If the broker then fails part of a batch, the 503 lists per event which ones are in the log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ingest_api.access import charge_events
from ingest_api.avro_validation import EventModel
from ingest_api.binary import (
    AVRO,
    AVRO_BATCH,
    decode_batch,
    prepare_binary,
    prepare_decoded,
    split_batch,
)
from ingest_api.body import (
    JSON,
    NDJSON,
    media_type,
    off_loop,
    parse_json,
    parse_ndjson,
    read_body,
    too_many_events,
)
from ingest_api.deps import state_of
from ingest_api.errors import ApiError
from ingest_api.metrics import note_events
from ingest_api.models import (
    BatchAccepted,
    BatchFailed,
    ErrorBody,
    EventAccepted,
    FieldError,
)
from ingest_api.responses import FastJSONResponse
from ingest_api.service import EventRejected, IngestState, prepare_event
from ingest_api.timestamps import now_ms
from logstream.producer import BrokerUnavailableError, OutgoingMessage

__all__ = ["event_router"]

MAX_REPORTED_PROBLEMS = 100

# How a batch item becomes a message: prepare_event (JSON) or prepare_decoded (Avro).
Prepare = Callable[..., tuple[OutgoingMessage, str | None]]

_SINGLE_TYPES = (JSON, AVRO)
_BATCH_TYPES = (JSON, NDJSON, AVRO_BATCH)
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed JSON or Avro"},
    413: {"model": ErrorBody, "description": "Body (or batch) too large"},
    415: {"model": ErrorBody, "description": "Wrong Content-Type"},
    422: {"model": ErrorBody, "description": "Schema violation; `fields` names each problem"},
    429: {"model": ErrorBody, "description": "The API key's request or event rate is exceeded"},
}


def event_router(models: Sequence[EventModel]) -> APIRouter:
    """The write routes of every event type in `models`, then a 404 for any other path."""
    router = APIRouter(prefix="/v1/events", tags=["events"])
    for model in models:
        _add_routes(router, model)
    known = ", ".join(f"/v1/events/{m.route}" for m in sorted(models, key=lambda m: m.route))

    async def unknown_event_type(event_type: str) -> NoReturn:
        """Any other event type: 404 naming the known ones."""
        raise ApiError(404, "unknown_event_type", f"no event type {event_type!r}; known: {known}")

    for path in ("/{event_type}", "/{event_type}/batch"):
        router.add_api_route(
            path,
            unknown_event_type,
            methods=["POST"],
            include_in_schema=False,
            response_model=None,
        )
    return router


def _add_routes(router: APIRouter, model: EventModel) -> None:
    """`POST /<route>` (one event) and `POST /<route>/batch` for one event type."""
    name = model.version.full_name.rsplit(".", 1)[-1]
    avro_body = {
        "type": "string",
        "format": "binary",
        "description": f"one {name}, Avro single-object encoded (C3 01, fingerprint, body), "
        "any version listed by GET /v1/schemas",
    }
    avro_batch_body = {
        "type": "string",
        "format": "binary",
        "description": f"{name} events, each an Avro long (zig-zag varint) length then its "
        "single-object encoded bytes",
    }

    async def post_event(request: Request) -> JSONResponse:
        state = state_of(request)
        kind = media_type(request, _SINGLE_TYPES)
        body = await read_body(request, state.settings.ingest_max_body_bytes)
        try:
            if kind == JSON:
                data = await off_loop(parse_json, body)
                message, event_id = prepare_event(state, model, data, now=now_ms())
            else:
                message, event_id = prepare_binary(state, model, body, now=now_ms())
        except EventRejected as exc:
            raise ApiError(422, "validation_failed", _summary(exc.fields), exc.fields) from None
        charge_events(request, 1)
        try:
            delivery = await state.producer.send(
                message.topic, message.key, message.value, message.timestamp_ms
            )
        except BrokerUnavailableError as exc:
            raise _broker_error(exc) from None
        # The only 2xx: one event, acknowledged (the metrics count it from this route's
        # 2xx answers: `RouteTally.accepts_one` in ingest_api/metrics.py).
        return FastJSONResponse(
            {
                "event_id": event_id,
                "topic": delivery.topic,
                "partition": delivery.partition,
                "offset": delivery.offset,
            },
            status_code=202,
        )

    async def post_batch(request: Request) -> JSONResponse:
        return await _post_batch(request, model)

    router.add_api_route(
        f"/{model.route}",
        post_event,
        methods=["POST"],
        name=f"post_{model.event_type}",
        summary=f"Append one {name}",
        description=f"Append one {name} (JSON, or Avro single-object encoded); answers 202 "
        "once the broker has acknowledged it.",
        status_code=202,
        response_model=EventAccepted,
        responses={
            **_ERRORS,
            503: {"model": ErrorBody, "description": "Broker unavailable; see Retry-After"},
        },
        openapi_extra=_body_spec(
            {JSON: {"schema": model.json_schema}, AVRO: {"schema": avro_body}}
        ),
    )
    router.add_api_route(
        f"/{model.route}/batch",
        post_batch,
        methods=["POST"],
        name=f"post_{model.event_type}_batch",
        summary=f"Append many {name} events",
        description=f"Append many {name} events, all or none validated; answers 202 once all "
        "are acknowledged.",
        status_code=202,
        response_model=BatchAccepted,
        responses={
            **_ERRORS,
            503: {
                "model": BatchFailed,
                "description": "The broker failed some events: `events` says which are in the log",
            },
        },
        openapi_extra=_body_spec(
            {
                JSON: {"schema": {"type": "array", "items": model.json_schema, "minItems": 1}},
                NDJSON: {
                    "schema": {"type": "string", "description": f"one {name} JSON object per line"}
                },
                AVRO_BATCH: {"schema": avro_batch_body},
            }
        ),
    )


def _body_spec(content: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": content}}


def _broker_error(exc: BrokerUnavailableError) -> ApiError:
    return ApiError(
        503,
        "broker_unavailable",
        f"{exc}; nothing was acknowledged, retry with the same event_id",
        headers={"Retry-After": str(exc.retry_after_s)},
    )


async def _post_batch(request: Request, model: EventModel) -> JSONResponse:
    """Append many events of `model`'s type, all or none validated; answers 202 once all
    are acknowledged."""
    state = state_of(request)
    settings = state.settings
    kind = media_type(request, _BATCH_TYPES)
    body = await read_body(request, settings.ingest_max_body_bytes)
    prepare: Prepare = prepare_event
    if kind == NDJSON:
        items = await off_loop(parse_ndjson, body, settings.ingest_max_batch_events)
    elif kind == AVRO_BATCH:
        split = split_batch(body, settings.ingest_max_batch_events)
        items = decode_batch(state.codec, split, model.event_type)
        prepare = prepare_decoded
    else:
        items = await off_loop(parse_json, body)
        if not isinstance(items, list):
            raise ApiError(422, "validation_failed", "a batch is a JSON array of events")
    note_events(request, received=len(items))
    if len(items) > settings.ingest_max_batch_events:
        raise too_many_events(settings.ingest_max_batch_events, len(items))
    if not items:
        raise ApiError(422, "validation_failed", "the batch holds no events")
    messages, event_ids = _prepare_all(state, model, items, prepare)
    charge_events(request, len(items))  # after validation, as a single event: 422s are free
    outcomes = await state.producer.send_many(messages)
    results: list[dict[str, Any]] = []
    for index, (message, event_id, outcome) in enumerate(
        zip(messages, event_ids, outcomes, strict=True)
    ):
        entry: dict[str, Any] = {"index": index, "event_id": event_id, "topic": message.topic}
        if outcome.delivery is not None:
            entry.update(
                status="written",
                partition=outcome.delivery.partition,
                offset=outcome.delivery.offset,
            )
        else:
            entry.update(status="failed", error=outcome.error)
        results.append(entry)
    written = sum(1 for o in outcomes if o.ok)
    cause = next((o.cause for o in outcomes if not o.ok), None)
    note_events(request, written=written, failed=len(results) - written, cause=cause)
    if written == len(results):
        return FastJSONResponse({"accepted": written, "events": results}, status_code=202)
    failed = len(results) - written
    error = ApiError(
        503,
        "broker_unavailable",
        f"{failed} of {len(results)} events were not acknowledged by the broker; those with "
        "status 'failed' are not confirmed in the log: resend them with the same event_id",
        headers={"Retry-After": str(max(1, round(settings.ingest_ack_timeout_s)))},
        extra={"accepted": written, "events": results},
    )
    raise error  # through the error handler, which notes the code for the metrics


def _prepare_all(
    state: IngestState, model: EventModel, items: list[Any], prepare: Prepare
) -> tuple[list[OutgoingMessage], list[str | None]]:
    """Validate and encode every event with `prepare`, or raise one 422 naming each bad
    index and field."""
    now = now_ms()
    messages: list[OutgoingMessage] = []
    event_ids: list[str | None] = []
    problems: list[FieldError] = []
    bad_events = 0
    for index, item in enumerate(items):
        try:
            message, event_id = prepare(state, model, item, now=now)
        except EventRejected as exc:
            bad_events += 1
            problems.extend(f.model_copy(update={"index": index}) for f in exc.fields)
            continue
        messages.append(message)
        event_ids.append(event_id)
    if problems:
        shown = problems[:MAX_REPORTED_PROBLEMS]
        more = f" (first {len(shown)} problems listed)" if len(problems) > len(shown) else ""
        raise ApiError(
            422,
            "validation_failed",
            f"{bad_events} of {len(items)} events are invalid; nothing was written{more}",
            shown,
        )
    return messages, event_ids


def _summary(fields: list[FieldError]) -> str:
    names = ", ".join(sorted({f.field or "(event)" for f in fields}))
    return f"the event is invalid ({names}); nothing was written"
