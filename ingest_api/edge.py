"""The one ASGI layer logstream adds to its app: access control and, when on, request metrics.

Why one layer for both: every pure-ASGI layer in front of a route costs the server about
5 us per request, several times what a microbenchmark of the same code shows (measured on
single-event ingest: with the metrics as a layer of their own, taking the access-control
layer out of the metrics-on server alone made it as fast as the one with metrics off). A
layer is a coroutine frame that every suspension and resumption of the request passes
through, and a request suspends at least once, waiting for the broker. So the access check
is a plain call that picks the ASGI app to run (the app, or the refusal's answer), and the
metrics note the answer's status and time around that one call.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, MutableMapping
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from ingest_api.access import AccessControl
from ingest_api.metrics import IngestMetrics

__all__ = ["EdgeLayer"]

Message = MutableMapping[str, Any]
_clock = time.perf_counter


class EdgeLayer:
    """Admits or refuses each HTTP request (`AccessControl`) and, with `metrics`, counts it
    once it is answered, refusals included (pure ASGI: one closure per request)."""

    def __init__(self, app: ASGIApp, access: AccessControl, metrics: IngestMetrics | None) -> None:
        self.app = app
        self.access = access
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self.metrics
        if metrics is None:
            await self.access.admit(scope, self.app)(scope, receive, send)
            return
        started = _clock()
        status = 500  # an exception escaping the app becomes ServerErrorMiddleware's 500

        def send_status(message: Message) -> Awaitable[None]:
            """Note the status; hands back `send`'s own awaitable (no coroutine of its own)."""
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        try:
            await self.access.admit(scope, self.app)(scope, receive, send_status)
        finally:
            metrics.observe_request(scope, status, _clock() - started)
