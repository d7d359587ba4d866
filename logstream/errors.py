"""The exception hierarchy: one root so callers can catch everything logstream raises."""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "CodecError",
    "ConfigError",
    "CorruptMessageError",
    "LogstreamError",
    "SchemaCompatibilityError",
    "StaleOffsetError",
    "StoreError",
    "UnknownSchemaError",
]


class LogstreamError(Exception):
    """Root of every error logstream raises; its message says what the user can do."""


class ConfigError(LogstreamError):
    """A setting is missing, malformed or unknown."""


class BrokerError(LogstreamError):
    """The local broker could not be assembled, started, stopped or reached."""


class CodecError(LogstreamError):
    """A message value could not be encoded or decoded."""


class UnknownSchemaError(CodecError):
    """A message names a writer-schema fingerprint that is not in the catalogue."""


class CorruptMessageError(CodecError):
    """A message value is not valid Avro single-object encoding for its schema."""


class SchemaCompatibilityError(LogstreamError):
    """A schema version cannot read data written with an older version."""


class StoreError(LogstreamError):
    """A view store could not be opened, read or written."""


class StaleOffsetError(StoreError):
    """A flush was fenced: the stored offset moved (rebalance or reset) since the batch began."""
