"""Secrets never printed: one helper for every message, repr and log line.

`redact(text)` hides passwords in URLs (`postgresql://user:***@host/db`), `password=...`
pairs (libpq DSNs, query strings), quoted `"...password...": "..."` / `secret` entries
(Kafka settings printed as dicts), and every secret value registered with
`register_secrets` (the SASL password, the store URL's password, secret values of
`LOGSTREAM_KAFKA_EXTRA`), wherever they appear. `redact_kafka(conf)` masks the secret
properties of a librdkafka configuration. `install_log_redaction()` makes every log
record (message and traceback) pass through `redact`.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = [
    "MASK",
    "install_log_redaction",
    "is_secret_key",
    "redact",
    "redact_kafka",
    "redact_url",
    "register_secrets",
    "url_password",
]

MASK = "***"
_URL_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@'\"]*:)[^\s@/'\"]+@")
_PAIR = re.compile(
    r"(?P<head>\b\w*(?:password|passwd|secret)\w*\s*=\s*)('[^']*'|[^\s&;,'\"]+)", re.IGNORECASE
)
_QUOTED = re.compile(
    r"(?P<head>(['\"])[^'\"]*(?:password|secret|jaas|\.pem)[^'\"]*\2\s*:\s*(['\"]))(?:(?!\3).)*\3",
    re.IGNORECASE,
)
_SECRET_KEY = re.compile(r"password|secret|jaas|\.pem$|oauthbearer\.config|token", re.IGNORECASE)
_MIN_SECRET_LEN = 4  # shorter values would mask ordinary words
_secrets: set[str] = set()
_lock = threading.Lock()


def is_secret_key(key: str) -> bool:
    """Whether a librdkafka (or similar) property holds a secret."""
    return bool(_SECRET_KEY.search(key))


def register_secrets(values: Iterable[str | None]) -> None:
    """Values to mask wherever they appear from now on (in this process)."""
    with _lock:
        _secrets.update(v for v in values if v and len(v) >= _MIN_SECRET_LEN)


def url_password(url: str | None) -> str | None:
    """The password inside a URL's userinfo, decoded, else None."""
    if not url:
        return None
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def redact(text: str) -> str:
    """`text` with every password and registered secret replaced by `***`."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    text = _URL_USERINFO.sub(lambda m: f"{m['head']}{MASK}@", text)
    text = _PAIR.sub(lambda m: f"{m['head']}{MASK}", text)
    return _QUOTED.sub(lambda m: f"{m['head']}{MASK}{m.group(3)}", text)


def redact_url(url: str | None) -> str | None:
    """A URL fit to print: its password (and any `password=` parameter) masked."""
    return None if url is None else redact(url)


def redact_kafka(conf: Mapping[str, Any]) -> dict[str, Any]:
    """A librdkafka configuration fit to print: secret properties masked."""
    return {k: (MASK if is_secret_key(k) and v not in (None, "") else v) for k, v in conf.items()}


class _Redacting:
    """A log record factory that redacts the message and the traceback of each record."""

    def __init__(self, base: Any) -> None:
        self.base = base
        self.formatter = logging.Formatter()

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = self.base(*args, **kwargs)
        if record.name == "uvicorn.access":  # its formatter needs the args as they are
            return record
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the handler to report
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = redact(self.formatter.formatException(record.exc_info))
        return record


def install_log_redaction() -> None:
    """Route every log record of this process through `redact` (idempotent)."""
    current = logging.getLogRecordFactory()
    if not isinstance(current, _Redacting):
        logging.setLogRecordFactory(_Redacting(current))
