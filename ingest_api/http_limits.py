"""uvicorn's httptools protocol with the limits a public server needs.

- **Header limits**: at most `LOGSTREAM_INGEST_MAX_HEADER_BYTES` of request line + headers
  and `LOGSTREAM_INGEST_MAX_HEADERS` header fields, else 431; counted as bytes arrive, so a
  64 MiB header costs at most one read beyond the limit, and again on each parsed request's
  own line and headers, so a large header block arriving in one read (or pipelined behind
  another request) is refused too.
- **Read timeouts**: a request's headers must arrive within `LOGSTREAM_INGEST_HEADER_TIMEOUT_S`
  of its first byte (or of the connection, for a new one), its body within
  `LOGSTREAM_INGEST_BODY_TIMEOUT_S` of its headers, else 408 and the connection closes:
  slow clients cannot hold connections open indefinitely.
- **Connection cap**: past `LOGSTREAM_INGEST_MAX_CONNECTIONS` open connections (per worker),
  a new one gets 503 with Retry-After and is closed; so does one from a peer address that
  already holds `LOGSTREAM_INGEST_MAX_CONNECTIONS_PER_CLIENT` (loopback included), so one
  client, even one whose requests wait out the 429 pause, holds at most its share.
- **Lingering close**: when the server closes a connection while the client is still
  sending its body (a 413 sent before reading 9 MiB, with `Connection: close` as urllib
  sends it), closing at once makes the kernel answer the unread data with a reset, and
  clients that read the answer only after sending (urllib, requests) see "connection reset"
  instead of the 413. As nginx does, the server half-closes (FIN after the answer), reads
  and discards what still arrives for up to `LINGER_MAX_S` (`LINGER_IDLE_S` without data),
  then closes.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from functools import lru_cache
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ingest_api.errors import error_body
from logstream.settings import Settings, cached_settings

__all__ = ["LINGER_IDLE_S", "LINGER_MAX_S", "GuardedHttpProtocol"]

LINGER_MAX_S = 10.0
LINGER_IDLE_S = 2.0


_per_client: Counter[str] = Counter()
"""Open connections of this worker by peer address."""


class _HeaderLimitError(Exception):
    """Raised inside a parser callback; httptools turns it into a parser error."""


@lru_cache(maxsize=1)
def _limits() -> Settings:
    return cached_settings()


def _raw_response(status: int, code: str, message: str, headers: dict[str, str]) -> bytes:
    body = json.dumps(error_body(code, message)).encode()
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines += ["content-type: application/json", f"content-length: {len(body)}"]
    lines += ["connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


class _LingeringTransport:
    """The transport uvicorn sees: `close()` lingers while a request is still arriving."""

    def __init__(self, real: asyncio.Transport, protocol: GuardedHttpProtocol) -> None:
        self._real = real
        self._protocol = protocol

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def close(self) -> None:
        self._protocol.close_gracefully()

    def is_closing(self) -> bool:
        return self._protocol.lingering or self._real.is_closing()


class GuardedHttpProtocol(HttpToolsProtocol):
    """HTTP/1.1 with header limits, read timeouts, a connection cap and lingering close."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = _limits()
        self.lingering = False
        self._real: asyncio.Transport | None = None
        self._closed = False
        self._reading_headers = True
        self._in_body = False
        self._header_bytes = 0
        self._header_count = 0
        self._parsed_header_bytes = 0
        self._refusal: tuple[int, str, str] | None = None
        self._peer: str | None = None  # counted in _per_client while set
        self._timer: asyncio.TimerHandle | None = None
        self._linger_until = 0.0

    # ----- connection ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._real = transport
        peername = transport.get_extra_info("peername")
        peer = str(peername[0]) if isinstance(peername, tuple) and peername else "?"
        if len(self.connections) >= self.settings.ingest_max_connections:
            self._turn_away(
                transport,
                "too_many_connections",
                "the server has too many open connections; retry shortly",
            )
            return
        if _per_client[peer] >= self.settings.ingest_max_connections_per_client:
            self._turn_away(
                transport,
                "too_many_client_connections",
                f"your address has {_per_client[peer]} open connections, the most one client "
                "may hold (LOGSTREAM_INGEST_MAX_CONNECTIONS_PER_CLIENT); retry shortly",
            )
            return
        self._peer = peer
        _per_client[peer] += 1
        super().connection_made(_LingeringTransport(transport, self))  # type: ignore[arg-type]
        self._arm(self.settings.ingest_header_timeout_s, self._header_timeout)

    def _turn_away(self, transport: asyncio.Transport, code: str, message: str) -> None:
        transport.write(_raw_response(503, code, message, {"Retry-After": "1"}))
        transport.close()
        self._closed = True

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._disarm()
        if self._peer is not None:
            _per_client[self._peer] -= 1
            if _per_client[self._peer] <= 0:
                del _per_client[self._peer]
            self._peer = None
        if self.transport is None:  # refused by the connection cap
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            self._discard(len(data))
            return
        if self._reading_headers:
            self._header_bytes += len(data)
            if self._timer is None:
                self._arm(self.settings.ingest_header_timeout_s, self._header_timeout)
        super().data_received(data)
        if (
            self._reading_headers
            and self._header_bytes > self.settings.ingest_max_header_bytes
            and not self.lingering
        ):
            self._refuse(431, "headers_too_large", self._header_size_message())

    # ----- parser callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._header_count = 0
        self._parsed_header_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count_parsed(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_parsed(len(name) + len(value) + 4)  # ": " and CRLF
        self._header_count += 1
        if self._header_count > self.settings.ingest_max_headers:
            self._refusal = (
                431,
                "too_many_headers",
                f"more than {self.settings.ingest_max_headers} header fields "
                "(LOGSTREAM_INGEST_MAX_HEADERS)",
            )
            raise _HeaderLimitError
        super().on_header(name, value)

    def _count_parsed(self, size: int) -> None:
        """The limit on this request's own line and headers, however the bytes arrived."""
        self._parsed_header_bytes += size
        if self._parsed_header_bytes > self.settings.ingest_max_header_bytes:
            self._refusal = (431, "headers_too_large", self._header_size_message())
            raise _HeaderLimitError

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._in_body = True
        self._disarm()
        self._arm(self.settings.ingest_body_timeout_s, self._body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._reading_headers = True
        self._header_bytes = 0
        self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if self._refusal is not None:
            self._refuse(*self._refusal)
            return
        super().send_400_response(msg)

    # ----- closing -------------------------------------------------------------------------
    def close_gracefully(self) -> None:
        """Close, lingering first if the client may still be sending a request."""
        real = self._real
        if real is None or real.is_closing() or self.lingering:
            return
        arriving = self._in_body or (self._reading_headers and self._header_bytes > 0)
        if self._closed or not arriving or not real.can_write_eof():
            self._disarm()
            real.close()
            return
        self.lingering = True
        self._linger_until = self.loop.time() + LINGER_MAX_S
        real.write_eof()  # the answer goes out, then FIN; we keep reading
        self.flow.resume_reading()
        self._disarm()
        self._arm(LINGER_IDLE_S, self._end_linger)

    def _discard(self, size: int) -> None:
        if self.loop.time() >= self._linger_until:
            self._end_linger()
            return
        self._disarm()
        self._arm(LINGER_IDLE_S, self._end_linger)

    def _end_linger(self) -> None:
        self._disarm()
        if self._real is not None and not self._real.is_closing():
            self._real.close()

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer `status` on a request the app never saw, then close (lingering)."""
        assert self._real is not None
        self.logger.info("refused a request from %s: %s", self.client, message)
        self._real.write(_raw_response(status, code, message, {}))
        self.close_gracefully()

    # ----- timers --------------------------------------------------------------------------
    def _arm(self, delay: float, callback: Any) -> None:
        if delay > 0:
            self._timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _header_timeout(self) -> None:
        self._timer = None
        if not self._reading_headers or self.lingering or self._closed:
            return
        if self._header_bytes == 0 and self.cycle is not None:
            self.close_gracefully()  # idle between requests: uvicorn's keep-alive rule
            return
        if self._header_bytes == 0:
            self._end_linger()  # a connection that never sent a byte
            return
        self._refuse(
            408,
            "request_timeout",
            f"the request headers did not arrive within "
            f"{self.settings.ingest_header_timeout_s:g}s (LOGSTREAM_INGEST_HEADER_TIMEOUT_S)",
        )

    def _body_timeout(self) -> None:
        self._timer = None
        if not self._in_body or self.lingering or self._closed:
            return
        if self.cycle is not None and self.cycle.response_started:
            self.close_gracefully()
            return
        self._refuse(
            408,
            "request_timeout",
            f"the request body did not arrive within "
            f"{self.settings.ingest_body_timeout_s:g}s (LOGSTREAM_INGEST_BODY_TIMEOUT_S)",
        )

    def _header_size_message(self) -> str:
        return (
            f"the request line and headers exceed {self.settings.ingest_max_header_bytes:,} "
            "bytes (LOGSTREAM_INGEST_MAX_HEADER_BYTES)"
        )
