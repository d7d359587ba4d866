"""`ApiError` and the handlers that give every failure the same JSON body.

Body: `{"error": {"code": "...", "message": "...", "fields": [{"index", "field", "message"}]}}`.
Handlers cover our own errors, FastAPI's request validation, Starlette's 404/405, and, as a
last resort, any bug (500) so that even then the client gets the same shape.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ingest_api.models import FieldError
from logstream.errors import StaleLayoutError

__all__ = ["ApiError", "error_body", "install_error_handlers"]

log = logging.getLogger(__name__)

_STATUS_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    503: "unavailable",
}


class ApiError(Exception):
    """An answer other than success; raised anywhere below a route, rendered by a handler."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: Sequence[FieldError] = (),
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = list(fields)
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def response(self) -> JSONResponse:
        body = {**error_body(self.code, self.message, self.fields), **self.extra}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def error_body(code: str, message: str, fields: Sequence[FieldError] = ()) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "fields": [f.model_dump(exclude_none=True) for f in fields],
        }
    }


def _note_error(request: Request, code: str, exc: Exception | None = None) -> None:
    """Leave the error's code (and a 503's cause) where the edge layer's metrics read it."""
    state = request.scope.setdefault("state", {})
    state["error_code"] = code
    cause = getattr(exc.__context__, "cause", None) if exc is not None else None
    if cause is not None:  # e.g. BrokerUnavailableError.cause: queue_full, ack_timeout
        state["unavailable_cause"] = cause


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    _note_error(request, exc.code, exc)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, "http_error")
    _note_error(request, code)
    return JSONResponse(
        error_body(code, str(exc.detail)),
        status_code=exc.status_code,
        headers=dict(exc.headers or {}),
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    _note_error(request, "validation_failed")
    fields = [
        FieldError(
            field=".".join(str(p) for p in err.get("loc", ()) if p != "body") or None,
            message=str(err.get("msg", "invalid")),
        )
        for err in exc.errors()
    ]
    return JSONResponse(
        error_body("validation_failed", "the request does not match the API", fields),
        status_code=422,
    )


async def _stale_layout(request: Request, exc: Exception) -> JSONResponse:
    """A view store of an older layout: unavailable until rebuilt (the message says how)."""
    _note_error(request, "rebuild_needed")
    return JSONResponse(error_body("rebuild_needed", str(exc)), status_code=503)


async def _client_gone(request: Request, exc: Exception) -> JSONResponse:
    """The client closed the connection mid-request (e.g. an aborted upload): one log line,
    not a 500 with a traceback; the answer goes nowhere, its status only feeds the metrics."""
    _note_error(request, "client_disconnected")
    log.warning("client disconnected during %s %s", request.method, request.url.path)
    return JSONResponse(error_body("client_disconnected", "the client went away"), 400)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        error_body("internal_error", "an unexpected error occurred; it has been logged"),
        status_code=500,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StaleLayoutError, _stale_layout)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unexpected)
