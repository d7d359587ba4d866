"""Who may call what: API keys (`Authorization: Bearer <key>`), scopes, per-key rate limits.

Asked in front of every route (by the app's one ASGI layer, `ingest_api/edge.py`): it maps the
path to the scope it needs (`logstream.auth.scopes`), answers 401 (no key, unknown or revoked
key), 403 (the key lacks the scope) or 429 (the key's request rate) in the shared error shape,
and otherwise passes the request on with the key in `request.state.api_key`. Write routes
charge their events with `charge_events` once they know how many a body holds. Not a FastAPI
dependency: it runs before routing (unknown paths are not revealed to strangers) and costs a
few microseconds per request. Not an ASGI layer of its own either: a layer costs the server
about as much again (see `edge.py`), so the check picks the ASGI app that answers instead.

A 429 for the request rate is answered after a pause (up to `TARPIT_S`, never longer than
the Retry-After it carries): a client that floods in a loop then waits on its own
connections instead of making the server refuse it thousands of times a second, which on
one event loop would slow every other key down (measured: another key's p99 went from 32 ms
to 330 ms under an 8-connection flood without the pause). A paused request holds its
connection, but one peer address holds at most its share of the connection cap
(`LOGSTREAM_INGEST_MAX_CONNECTIONS_PER_CLIENT`, in `http_limits.py`). Buckets are per worker
process: with `--workers N` a key may reach N times its rate.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ingest_api.errors import ApiError
from ingest_api.rate_limits import RateLimiter
from logstream.auth.keys import ApiKey, KeyRing
from logstream.auth.scopes import ADMIN, grants, required_scope

__all__ = ["AccessControl", "charge_events", "sees_internals"]

log = logging.getLogger(__name__)

REALM = 'Bearer realm="logstream"'
TARPIT_S = 1.0


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else ""
    return None


def _unauthorized(message: str, error: str | None) -> ApiError:
    challenge = REALM + (f', error="{error}"' if error else "")
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})


def _rate_limited(what: str, retry_after: int) -> ApiError:
    return ApiError(
        429,
        "rate_limited",
        f"this API key's {what} rate is exceeded; retry after {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )


class AccessControl:
    """Who may pass; `keyring.enforced` is False only on loopback with no key file."""

    def __init__(self, keyring: KeyRing, limiter: RateLimiter) -> None:
        self.keyring = keyring
        self.limiter = limiter

    def admit(self, scope: Scope, app: ASGIApp) -> ASGIApp:
        """`app` when the HTTP request may pass (its key then in `scope["state"]`), else the
        ASGI app that answers the refusal."""
        need = required_scope(scope["path"])
        if need is None or not self.keyring.enforced:
            return app
        try:
            key = self._admit(scope, need.scope)
        except ApiError as exc:
            return _refusal(exc)
        scope.setdefault("state", {})["api_key"] = key
        return app

    def _admit(self, scope: Scope, needed: str) -> ApiKey:
        token = _bearer(scope)
        if not token:
            raise _unauthorized("an API key is required: send `Authorization: Bearer <key>`", None)
        key = self.keyring.lookup(token)
        if key is None:
            raise _unauthorized("the API key is unknown or revoked", "invalid_token")
        if not grants(key.scopes, needed):
            raise ApiError(
                403,
                "forbidden",
                f"the API key {key.id} lacks the scope {needed!r}",
                headers={
                    "WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{needed}"'
                },
            )
        retry_after = self.limiter.take_request(key)
        if retry_after:
            raise _rate_limited("request", retry_after)
        return key


def _refusal(exc: ApiError) -> ASGIApp:
    """The ASGI app answering `exc`; a 429 after its pause (see the module's docstring)."""

    async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
        if exc.status == 429:
            await asyncio.sleep(min(TARPIT_S, float(exc.headers["Retry-After"])))
        await exc.response()(scope, receive, send)

    return refuse


def charge_events(request: Request, count: int) -> None:
    """Take `count` events from the caller's event budget; ApiError 429 when it is spent.
    A no-op when auth is off (no key on the request)."""
    key: Any = getattr(request.state, "api_key", None)
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if key is None or limiter is None:
        return
    retry_after = limiter.take_events(key, count)
    if retry_after:
        raise _rate_limited("event", retry_after)


def sees_internals(request: Request) -> bool:
    """Whether the caller may see deployment details (broker addresses, raw broker errors):
    an `admin` key, or anyone when auth is off (loopback without a key file)."""
    key: ApiKey | None = getattr(request.state, "api_key", None)
    return key is None or ADMIN in key.scopes
