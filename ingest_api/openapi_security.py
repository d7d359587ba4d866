"""The OpenAPI document says what `AccessControl` enforces: a bearer scheme on every
operation but the public ones, each with its 401, 403 and 429 answers in the shared
`{"error": ...}` shape, and the scope it needs. It also gives the real bodies of the other
errors: a 422 is that shape too (not FastAPI's default `HTTPValidationError`), and view reads
declare their 503 (too many waiters, a store to rebuild) and 504 (a write not applied in
time)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from logstream.auth.scopes import ADMIN, AUTHENTICATED, required_scope

__all__ = ["document_security"]

SCHEME = "apiKey"
# ErrorBody is in the document already: the write routes declare it for their errors.
_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_JSON = {"application/json": {"schema": _ERROR_REF}}
_VIEW_RESPONSES = {
    "503": "Unavailable for now: too many reads wait for their writes "
    "(LOGSTREAM_READ_WAITERS_MAX), or the view's store must be rebuilt; see `Retry-After`",
}
_WAIT_RESPONSES = {
    "504": "`wait_for` was not applied within `wait_ms`; see `Retry-After`",
}
_UNPROCESSABLE = "A parameter or field is invalid; `error.fields` names it"
# Answered by the server itself before any route runs (ingest_api/http_limits.py), so every
# operation can get them.
_SERVER_RESPONSES = {
    "408": "The request line, headers or body did not arrive in time",
    "431": "The request line and headers are larger than LOGSTREAM_INGEST_MAX_HEADER_BYTES, "
    "or there are more headers than LOGSTREAM_INGEST_MAX_HEADERS",
}
_RESPONSES = {
    "401": "No API key, or an unknown or revoked one (`WWW-Authenticate: Bearer`)",
    "403": "The API key lacks the scope this operation needs",
    "429": "The API key's request or event rate is exceeded; see `Retry-After`",
}


def _scope_text(path: str) -> str:
    need = required_scope(path)
    if need is None:
        return "public"
    if need.scope == AUTHENTICATED:
        return "any valid API key"
    if need.scope == ADMIN:
        return "scope `admin`"
    return f"scope `{need.scope}` (or `{need.scope.split(':')[0]}:*`, or `admin`)"


def document_security(app: FastAPI) -> None:
    base: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = base()
        components = schema.setdefault("components", {})
        components.setdefault("securitySchemes", {})[SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from `logstream keys create`, as "
            "`Authorization: Bearer lsk_...`. Not required on a loopback-only server "
            "without a key file.",
        }
        for path, operations in schema.get("paths", {}).items():
            public = required_scope(path) is None
            for operation in operations.values():
                _document_errors(path, operation)
                if public:
                    operation["security"] = []
                    continue
                operation["security"] = [{SCHEME: []}]
                note = f"Needs {_scope_text(path.replace('{event_type}', '*'))}."
                described = operation.get("description", "")
                operation["description"] = f"{described}\n\n{note}".strip()
                responses = operation.setdefault("responses", {})
                for status, text in _RESPONSES.items():
                    responses.setdefault(status, {"description": text, "content": _JSON})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document_errors(path: str, operation: dict[str, Any]) -> None:
    """422 in the shared shape; the server's own 408/431; 503/504 of the view reads (see
    the module doc)."""
    responses = operation.setdefault("responses", {})
    for status, text in _SERVER_RESPONSES.items():
        responses.setdefault(status, {"description": text, "content": _JSON})
    if "422" in responses:
        responses["422"] = {"description": _UNPROCESSABLE, "content": _JSON}
    if path == "/v1/views" or path.startswith("/v1/views/"):
        for status, text in _VIEW_RESPONSES.items():
            responses.setdefault(status, {"description": text, "content": _JSON})
        names = {p.get("name") for p in operation.get("parameters", [])}
        if "wait_for" in names:
            for status, text in _WAIT_RESPONSES.items():
                responses.setdefault(status, {"description": text, "content": _JSON})
