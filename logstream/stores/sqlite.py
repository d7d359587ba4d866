"""The embedded view store: one SQLite file per view, WAL mode (the SQLite dialect of
`logstream.stores.sql`, which holds everything both stores share).

Durability: the database runs with `journal_mode=WAL` and `synchronous=FULL`, so the WAL is
fsynced at every commit and a flush that `commit()` returned from survives a power loss.
(`NORMAL` would be atomic but could lose the last commits; the replay would then redo them,
so counts would still be exact, only older. FULL is the default; NORMAL is opt-in.)

Writes: a flush upserts its rows with one statement per table over a JSON array
(`json_each`), not with `executemany`. The sqlite3 module releases the GIL around every
row's step and takes it back for the next row's parameters; with the consume loop holding
the GIL most of the time, each hand-back waited for the interpreter's switch interval, so
flushes crawled and the consume loop then waited for them. One statement releases the GIL
once for the whole flush: likes-by-user went from ~0.4 to ~0.7 of the raw consume rate
(`make bench-views`). The JSON is produced by orjson in C. Sketch bytes (distinct
aggregates) cannot travel in JSON: they go as one concatenated blob parameter, and each
JSON row carries its sketch's start and length in it (`substr` on a blob slices bytes).

Concurrency: one writing connection per store object, opened with `check_same_thread=False`
and guarded by a lock, so a web server's threads can share it; reads take one of up to
READERS read-only connections of their own, so one long ranged scan does not hold up every
other read of the view, nor the writer (WAL readers see the last commit). Other processes
open their own store on the same file: WAL lets them read while the consumer writes, and
writers queue on `BEGIN IMMEDIATE` (busy timeout) instead of failing.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Literal

import orjson

from logstream.aggregates import Aggregate
from logstream.errors import StoreError
from logstream.stores.sql import SQLViewStore, Tx

__all__ = ["SQLiteViewStore"]

READERS = 4  # read connections per store object: concurrent reads beyond this wait for one

_TYPES = {
    "text": "TEXT",
    "key": "TEXT",
    "bigint": "INTEGER",
    "int": "INTEGER",
    "number": "",  # no affinity: an integer stays an integer, a real a real
    "blob": "BLOB",
    "serial": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "kv_suffix": " WITHOUT ROWID",
    "buckets_suffix": " WITHOUT ROWID",
}

_converted: dict[str, str] = {}


def _qmark(sql: str) -> str:
    """A shared statement in sqlite3's parameter style."""
    out = _converted.get(sql)
    if out is None:
        out = _converted[sql] = sql.replace("%s", "?").replace("%%", "%")
    return out


class _SQLiteTx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.db.execute(_qmark(sql), tuple(params)).fetchall()

    def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.db.execute(_qmark(sql), tuple(params))

    def many(self, sql: str, params: Iterable[Sequence[Any]]) -> None:
        self.db.executemany(_qmark(sql), params)


class SQLiteViewStore(SQLViewStore):
    """A view's counters, aggregates and offsets in one SQLite file (see the module docstring)."""

    types = _TYPES
    least = "min"
    greatest = "max"

    def __init__(
        self,
        path: Path,
        totals_series: Iterable[str],
        *,
        namespace: str | None = None,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout_s: float = 30.0,
        time_index: bool = True,
        aggregates: Sequence[Aggregate] = (),
    ) -> None:
        """Open (creating if needed) the file; `namespace` guards against two views sharing it."""
        super().__init__(totals_series, aggregates, namespace, time_index)
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be 'FULL' or 'NORMAL'")
        self.path = Path(path)
        self.where = f"view store {self.path}"
        self._lock = threading.RLock()
        self._upserts: dict[tuple[str, bool], str] = {}
        self._busy_timeout_s = busy_timeout_s
        # Reads use connections of their own (WAL: readers never wait for the writer or for
        # each other), opened on demand up to READERS; none until the layout is in place.
        self._readers: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._reader_slots = threading.BoundedSemaphore(READERS)
        self._all_readers: list[sqlite3.Connection] = []
        self._reads_pooled = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path,
                timeout=busy_timeout_s,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # shared across threads, serialized by self._lock
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open view store {self.path}: {exc}") from exc
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute("PRAGMA cache_size=-131072")  # 128 MiB: hot keys stay in memory
            self._db.execute("PRAGMA temp_store=MEMORY")
            self._ensure_layout()
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(f"cannot initialise view store {self.path}: {exc}") from exc
        except StoreError:
            self._db.close()
            raise
        self._reads_pooled = True

    def close(self) -> None:
        """Close the connections; idempotent."""
        with self._lock:
            self._reads_pooled = False
            self._db.close()
            for reader in self._all_readers:
                reader.close()
            self._all_readers.clear()

    # -- dialect hooks -------------------------------------------------------------------

    @contextmanager
    def _transaction(self, what: str, *, write: bool) -> Iterator[Tx]:
        """BEGIN IMMEDIATE takes the file's write lock up front for a write; a read is one
        snapshot. On any failure, the COMMIT included, the transaction is rolled back if it
        is still open, so the connection is clean for the next attempt: the runtime retries
        the same flush after a full disk or a busy file, and a transaction left open would
        turn that retry into "cannot start a transaction within a transaction"."""
        if not write and self._reads_pooled:
            with self._read_connection() as reader:
                try:
                    reader.execute("BEGIN")
                    try:
                        yield _SQLiteTx(reader)
                    finally:
                        if reader.in_transaction:
                            reader.execute("ROLLBACK")  # a read changes nothing
                except sqlite3.Error as exc:
                    raise StoreError(f"cannot {what} {self.where}: {exc}") from exc
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield _SQLiteTx(self._db)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
            except sqlite3.Error as exc:
                raise StoreError(f"cannot {what} {self.where}: {exc}") from exc

    @contextmanager
    def _read_connection(self) -> Iterator[sqlite3.Connection]:
        """A read connection for one transaction: an idle one, or a new one while fewer
        than READERS exist (else wait for one to come back)."""
        with self._reader_slots:
            try:
                reader = self._readers.get_nowait()
            except queue.Empty:
                reader = self._open_reader()
            try:
                yield reader
            finally:
                self._readers.put(reader)

    def _open_reader(self) -> sqlite3.Connection:
        try:
            reader = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,  # used by one thread at a time (checked out)
            )
            reader.execute("PRAGMA cache_size=-32768")  # 32 MiB each
            reader.execute("PRAGMA query_only=ON")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open a reader of {self.where}: {exc}") from exc
        with self._lock:
            self._all_readers.append(reader)
        return reader

    def _rollback(self) -> None:
        """Roll back whatever is open; SQLite may have done it already (SQLITE_FULL and I/O
        errors end the transaction), in which case there is nothing to do."""
        if self._db.in_transaction:
            with suppress(sqlite3.Error):  # the original error is the one worth reporting
                self._db.execute("ROLLBACK")

    def _blob_positions(self, table: str) -> list[int]:
        cols = self.columns_of(table)
        blobs = {c for _i, c, _k in self.layout.distinct}
        return [i for i, c in enumerate(cols) if c in blobs]

    def _upsert(
        self, tx: Tx, table: str, rows: list[tuple[Any, ...]], returning: list[str]
    ) -> list[tuple[Any, ...]]:
        """One INSERT ... SELECT FROM json_each(?1) ... ON CONFLICT DO UPDATE per table."""
        blobs = self._blob_positions(table)
        sql = self._upserts.get((table, bool(returning)))
        if sql is None:
            sql = self._upserts[(table, bool(returning))] = self._upsert_text(
                table, blobs, returning
            )
        db = tx.db  # type: ignore[attr-defined]
        if not blobs:
            cur = db.execute(sql, (orjson.dumps(rows),))
            return cur.fetchall() if returning else []
        packed, blob = _pack_blobs(rows, blobs)
        cur = db.execute(sql, (orjson.dumps(packed), blob))
        return cur.fetchall() if returning else []

    def _upsert_text(self, table: str, blobs: list[int], returning: list[str]) -> str:
        cols = self.columns_of(table)
        width = len(cols)
        selects = []
        for i in range(len(cols)):
            if i in blobs:
                selects.append(
                    f"substr(?2, json_extract(value, '$[{i}]'), "
                    f"json_extract(value, '$[{width + blobs.index(i)}]'))"
                )
            else:
                selects.append(f"json_extract(value, '$[{i}]')")
        # "WHERE true" lets SQLite parse the upsert clause after a SELECT. json_extract
        # (not ->>) keeps SQLite 3.9+ enough.
        sql = (
            f"INSERT INTO {table} AS t ({', '.join(cols)}) SELECT {', '.join(selects)} "
            f"FROM json_each(?1) WHERE true {self._upsert_sql(table)}"
        )
        if returning:
            sql += f" RETURNING {', '.join(returning)}"
        return sql

    def _write_back(self, tx: Tx, table: str, column: str, rows: list[tuple[Any, ...]]) -> None:
        nkeys = len(rows[0]) - 1
        packed, blob = _pack_blobs(rows, [nkeys])
        keys = ["series", "key", "bucket_ms"][:nkeys]
        match = " AND ".join(
            f"{table}.{k} = json_extract(j.value, '$[{i}]')" for i, k in enumerate(keys)
        )
        tx.db.execute(  # type: ignore[attr-defined]
            f"UPDATE {table} SET {column} = substr(?2, json_extract(j.value, '$[{nkeys}]'), "
            f"json_extract(j.value, '$[{nkeys + 1}]')) FROM json_each(?1) AS j WHERE {match}",
            (orjson.dumps(packed), blob),
        )

    def _temp_affected(self, tx: Tx, select: str, params: Sequence[Any]) -> None:
        tx.run("DROP TABLE IF EXISTS temp.logstream_affected")
        tx.run(f"CREATE TEMP TABLE logstream_affected AS {select}", params)

    def _has_table(self, tx: Tx, name: str) -> bool:
        return bool(
            tx.rows("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = %s", (name,))
        )

    def _has_time_index(self, tx: Tx) -> bool:
        return bool(
            tx.rows("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'buckets_by_time'")
        )


def _pack_blobs(rows: list[tuple[Any, ...]], blobs: list[int]) -> tuple[list[list[Any]], bytes]:
    """Rows with each blob replaced by its 1-based start in one concatenated blob, and its
    length appended (after all columns), for `substr(?2, start, length)`; None stays None."""
    parts: list[bytes] = []
    at = 1
    packed: list[list[Any]] = []
    if len(blobs) == 1:  # one distinct aggregate (the usual): no inner loop per row
        (i,) = blobs
        append, add_part = packed.append, parts.append
        for row in rows:
            data = row[i]
            if data is None:
                append([*row, None])
                continue
            size = len(data)
            out = [*row, size]
            out[i] = at
            append(out)
            add_part(data)
            at += size
        return packed, b"".join(parts)
    for row in rows:
        out = list(row)
        lengths: list[int | None] = []
        for i in blobs:
            data = row[i]
            if data is None:
                lengths.append(None)
                continue
            out[i] = at
            lengths.append(len(data))
            parts.append(data)
            at += len(data)
        packed.append(out + lengths)
    return packed, b"".join(parts)
