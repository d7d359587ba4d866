"""Which store failures are worth waiting out, and how long to wait between attempts.

A consumer is meant to run unattended: a full disk, a locked SQLite file or a PostgreSQL
server that restarts all pass, and when they do the very same flush can be committed again
(its transaction was rolled back, its fencing offsets are unchanged), so the view stays
exact. Dying instead would only hand the problem to a supervisor that restarts the consumer
into the same wall. Anything else (fencing, a schema from the future, a bug) is not
transient, and retrying it would hide it: those errors stop the consumer as before.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from logstream.errors import StaleOffsetError, StoreError

__all__ = ["Backoff", "is_transient_store_error"]

# SQLite primary result codes (the low byte of an extended code) that a later attempt can
# get past: the disk or the page limit is full, another writer holds the file, an I/O error.
_SQLITE_TRANSIENT = frozenset(
    {
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_PROTOCOL,  # WAL lock contention that outlasted SQLite's own retries
    }
)

# PostgreSQL SQLSTATE classes and codes that pass on their own: 08 connection exceptions,
# 53 insufficient resources (53100 disk full, 53300 too many connections), 57P01-57P03
# shutdown/restart, 40001/40P01 serialization failure and deadlock (the transaction was
# rolled back and may simply be run again).
_PG_TRANSIENT_CLASSES = ("08", "53")
_PG_TRANSIENT_CODES = frozenset({"57P01", "57P02", "57P03", "40001", "40P01"})


def is_transient_store_error(exc: BaseException) -> bool:
    """True when `exc` is a store failure a later attempt of the same flush may get past."""
    if isinstance(exc, StaleOffsetError) or not isinstance(exc, StoreError):
        return False
    cause = exc.__cause__
    if isinstance(cause, sqlite3.Error):
        code = getattr(cause, "sqlite_errorcode", None)
        return code is not None and (code & 0xFF) in _SQLITE_TRANSIENT
    return _is_transient_postgres(cause)


def _is_transient_postgres(cause: BaseException | None) -> bool:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency, but stay importable
        return False
    if not isinstance(cause, psycopg.Error):
        return False
    sqlstate = cause.sqlstate
    if sqlstate is None:
        # No answer from the server at all: the connection broke or could not be opened.
        return isinstance(cause, psycopg.OperationalError)
    return sqlstate.startswith(_PG_TRANSIENT_CLASSES) or sqlstate in _PG_TRANSIENT_CODES


@dataclass
class Backoff:
    """Capped exponential delays: first, 2*first, ... up to cap (1 s -> 10 s by default)."""

    first_s: float = 1.0
    cap_s: float = 10.0
    _next_s: float = 0.0

    def next_delay(self) -> float:
        delay = self._next_s or self.first_s
        self._next_s = min(delay * 2, self.cap_s)
        return delay

    def reset(self) -> None:
        self._next_s = 0.0
