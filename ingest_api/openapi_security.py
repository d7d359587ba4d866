"""The OpenAPI document says what `AccessControl` enforces: a bearer scheme on every
operation but the public ones, each with its 401, 403 and 429 answers in the shared
`{"error": ...}` shape, and the scope it needs."""

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
