"""What the client raises: an answer it will not retry, or retries that ran out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from logstream.client.receipts import Receipt
from logstream.errors import LogstreamError

__all__ = ["BatchIncompleteError", "ClientError", "RequestFailedError", "UnreachableError"]


class ClientError(LogstreamError):
    """Root of the client's errors."""


class RequestFailedError(ClientError):
    """The server answered with an error: at once for one that a retry cannot fix (4xx other
    than 429), or after the last retry for 429/502/503/504. `code`, `fields` and `body` are
    the API's error body (README "Ingest API")."""

    def __init__(self, status: int, body: Any, retry_after_s: float | None = None) -> None:
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        self.status = status
        self.code: str = str(error.get("code", "http_error"))
        self.fields: list[dict[str, Any]] = list(error.get("fields") or [])
        self.body = body
        self.retry_after_s = retry_after_s
        message = error.get("message") or (body if isinstance(body, str) else "")
        super().__init__(f"HTTP {status} {self.code}: {message}".rstrip(": "))


class BatchIncompleteError(ClientError):
    """`send_many` could not complete: `receipts[i]` is event i's receipt, or None when it is
    not confirmed in the log. Resend exactly `unconfirmed` (they keep their event ids, so a
    copy that did land is counted once). `error` is why the last attempt failed."""

    def __init__(
        self,
        receipts: Sequence[Receipt | None],
        unconfirmed: Sequence[dict[str, Any]],
        error: ClientError,
    ) -> None:
        self.receipts = list(receipts)
        self.unconfirmed = list(unconfirmed)
        self.error = error
        done = len(self.receipts) - len(self.unconfirmed)
        super().__init__(f"{done} of {len(self.receipts)} events acknowledged: {error}")


class UnreachableError(ClientError):
    """No answer (connection refused or reset, timeout) after the last retry."""
