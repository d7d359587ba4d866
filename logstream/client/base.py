"""What the sync and the asyncio client hold in common: settings, the codec, receipts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from logstream.client import operations as ops
from logstream.client.bodies import Encoding
from logstream.client.receipts import Receipt, ReceiptLog
from logstream.client.retry import RetryPolicy
from logstream.codec import Codec

__all__ = ["ClientBase", "with_api_key"]

DEFAULT_BATCH_SIZE = 500  # well under ingest's 10,000-event and 8 MiB limits


def with_api_key(headers: Mapping[str, str] | None, api_key: str | None) -> dict[str, str]:
    """The client's headers, plus `Authorization: Bearer <api_key>` when a key is given
    (`logstream keys create` makes one; a loopback server without keys needs none)."""
    merged = dict(headers or {})
    if api_key:
        merged["Authorization"] = f"Bearer {api_key}"
    return merged


class ClientBase:
    """Builds each call's operation and keeps the receipts it returns; no I/O here."""

    def __init__(
        self,
        *,
        max_retries: int,
        backoff: float,
        backoff_max: float,
        batch_size: int,
        codec: Codec | None,
        retry: RetryPolicy | None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.retry = retry or RetryPolicy(
            max_retries=max_retries, backoff_s=backoff, backoff_max_s=backoff_max
        )
        self.batch_size = batch_size
        self._codec = codec
        self._receipts = ReceiptLog()

    @property
    def last_receipts(self) -> list[Receipt]:
        """The newest receipt per partition this client got: `get_view(...,
        wait_for=client.last_receipts)` reads everything it wrote so far."""
        return self._receipts.newest()

    def codec(self) -> Codec:
        """The codec for `avro/binary`, loaded on first use (LOGSTREAM_SCHEMA_DIR, else the
        `.avsc` files shipped with logstream)."""
        if self._codec is None:
            from logstream.schemas import SchemaCatalogue
            from logstream.settings import Settings

            self._codec = Codec(SchemaCatalogue.load(Settings().resolved_schema_dir))
        return self._codec

    def _send_op(
        self, event_type: str, event: Mapping[str, Any], encoding: Encoding
    ) -> ops.Operation[Receipt]:
        codec = self.codec() if encoding == "avro" else None
        receipt = yield from ops.send_one(event_type, event, self.retry, encoding, codec)
        self._receipts.add([receipt])
        return receipt

    def _send_many_op(
        self, event_type: str, events: Iterable[Mapping[str, Any]], batch_size: int | None
    ) -> ops.Operation[list[Receipt]]:
        try:
            receipts = yield from ops.send_many(
                event_type, events, self.retry, batch_size or self.batch_size
            )
        except Exception as exc:
            self._receipts.add(getattr(exc, "receipts", ()))
            raise
        self._receipts.add(receipts)
        return receipts

    def _view_op(
        self,
        view: str,
        path: str,
        params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None,
        wait_for: Iterable[Receipt] | None,
        wait_ms: int | None,
    ) -> ops.Operation[dict[str, Any]]:
        return ops.get_view(view, path, params, self.retry, wait_for or (), wait_ms)
