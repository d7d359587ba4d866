"""Log output for every logstream process: plain text, or one JSON object a line.

`LOGSTREAM_LOG_FORMAT=json` makes each record a JSON object (`time`, `level`, `logger`,
`message`, and `exception` when there is one) that log shippers read without parsing rules.
Fields a caller passes with `extra=` (e.g. `partition`, `offset`) and the process context set
with `set_log_context` (e.g. the `view` a consumer builds) are added as top-level keys.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from logstream.redact import redact

__all__ = [
    "JSON_FIELDS",
    "JsonFormatter",
    "configure_cli_logging",
    "configure_logging",
    "set_log_context",
    "uvicorn_log_config",
]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = ("view", "group", "topic", "partition", "offset", "partitions")
"""Keys taken from a record's `extra=` when present (the runtime passes them)."""

_context: dict[str, Any] = {}


def set_log_context(**fields: Any) -> None:
    """Fields added to every JSON record of this process (a consumer: its view)."""
    _context.update({k: v for k, v in fields.items() if v is not None})


class JsonFormatter(logging.Formatter):
    """One JSON object per record; never raises on a value JSON cannot hold (uses str).
    Message, traceback and stack pass through `redact` here, since this formatter builds
    the traceback text itself (a record factory cannot reach it)."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        body.update(_context)
        for key in JSON_FIELDS:
            value = record.__dict__.get(key)
            if value is not None:
                body[key] = value
        if record.exc_info:
            body["exception"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            body["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(body, default=str)


def _formatter(log_format: str, text_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(text_format)


def configure_logging(
    log_format: str = "text", level: int = logging.INFO, text_format: str = TEXT_FORMAT
) -> None:
    """Root handler on stderr in the chosen format (replaces any handler set before)."""
    handler = logging.StreamHandler()
    handler.setFormatter(_formatter(log_format, text_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def configure_cli_logging() -> None:
    """Run once by the `logstream` command before any subcommand: with
    `LOGSTREAM_LOG_FORMAT=json`, whatever a command logs (backfill, rebuild, import, ...) is
    a JSON line, at the level Python shows by default (WARNING); `consume`, `ingest` and the
    supervisor then set their own level. Text changes nothing. A bad setting is left for
    the command itself to report, as one `error:` line."""
    from logstream.errors import LogstreamError
    from logstream.settings import load_settings

    try:
        log_format = load_settings().log_format
    except LogstreamError:
        return
    if log_format == "json":
        configure_logging("json", logging.WARNING)


def uvicorn_log_config(log_format: str) -> dict[str, Any] | None:
    """uvicorn's `log_config`: None keeps uvicorn's own text format; JSON for every logger
    of the server process (uvicorn's, the app's, librdkafka's) otherwise."""
    if log_format != "json":
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "logstream.logs.JsonFormatter"}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["default"], "level": "INFO"},
        "loggers": {
            "uvicorn": {"handlers": [], "level": "INFO", "propagate": True},
            "uvicorn.error": {"handlers": [], "level": "INFO", "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "INFO", "propagate": True},
        },
    }
