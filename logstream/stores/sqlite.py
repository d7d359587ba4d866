"""The embedded view store: one SQLite file per view, WAL mode.

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
(`make bench-views`). The JSON is produced by orjson in C.

Concurrency: one connection per store object, opened with `check_same_thread=False` and
guarded by a lock, so a web server's threads can share it. Other processes open their own
store on the same file: WAL lets them read while the consumer writes, and writers queue on
`BEGIN IMMEDIATE` (busy timeout) instead of failing.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Literal, cast

import orjson

from logstream.errors import StaleOffsetError, StoreError
from logstream.stores.base import (
    SCHEMA_VERSION,
    BaseViewStore,
    BucketRow,
    Counter,
    EventIdRange,
    Flush,
    Position,
    Reset,
    SkippedRange,
    StoreStats,
    TotalRow,
    delta_rows,
    total_deltas,
    window_bounds,
)

__all__ = ["SQLiteViewStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS buckets (
    series    TEXT    NOT NULL,
    key       TEXT    NOT NULL,
    bucket_ms INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    first_ms  INTEGER NOT NULL,
    last_ms   INTEGER NOT NULL,
    PRIMARY KEY (series, key, bucket_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS totals (
    series   TEXT    NOT NULL,
    key      TEXT    NOT NULL,
    count    INTEGER NOT NULL,
    first_ms INTEGER NOT NULL,
    last_ms  INTEGER NOT NULL,
    PRIMARY KEY (series, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS totals_by_count ON totals (series, count DESC, key);
CREATE TABLE IF NOT EXISTS positions (
    topic        TEXT    NOT NULL,
    partition    INTEGER NOT NULL,
    next_offset  INTEGER NOT NULL,
    guard_offset INTEGER,
    guard_min_ms INTEGER,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS skipped (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    topic       TEXT    NOT NULL,
    partition   INTEGER NOT NULL,
    from_offset INTEGER NOT NULL,
    to_offset   INTEGER NOT NULL,
    recorded_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS event_ids (
    topic       TEXT    NOT NULL,
    partition   INTEGER NOT NULL,
    from_offset INTEGER NOT NULL,
    to_offset   INTEGER NOT NULL,
    payload     BLOB    NOT NULL,
    PRIMARY KEY (topic, partition, from_offset)
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('dlq_count', '0');
"""

# Rows arrive as one JSON array of arrays; "WHERE true" lets SQLite parse the upsert
# clause after a SELECT. json_extract (not ->>) keeps SQLite 3.9+ enough.
_UPSERT_BUCKETS = """
INSERT INTO buckets (series, key, bucket_ms, count, first_ms, last_ms)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]')
FROM json_each(?1) WHERE true
ON CONFLICT (series, key, bucket_ms) DO UPDATE SET
    count = count + excluded.count,
    first_ms = min(first_ms, excluded.first_ms),
    last_ms = max(last_ms, excluded.last_ms)
"""

_UPSERT_TOTALS = """
INSERT INTO totals (series, key, count, first_ms, last_ms)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]'), json_extract(value, '$[4]')
FROM json_each(?1) WHERE true
ON CONFLICT (series, key) DO UPDATE SET
    count = count + excluded.count,
    first_ms = min(first_ms, excluded.first_ms),
    last_ms = max(last_ms, excluded.last_ms)
"""

_ADVANCE_POSITION = """
UPDATE positions SET
    next_offset = ?1,
    guard_offset = CASE WHEN guard_offset IS NOT NULL AND ?1 >= guard_offset
                        THEN NULL ELSE guard_offset END,
    guard_min_ms = CASE WHEN guard_offset IS NOT NULL AND ?1 >= guard_offset
                        THEN NULL ELSE guard_min_ms END
WHERE topic = ?2 AND partition = ?3
"""

_REPLACE_POSITION = """
INSERT INTO positions (topic, partition, next_offset, guard_offset, guard_min_ms)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (topic, partition) DO UPDATE SET
    next_offset = excluded.next_offset,
    guard_offset = excluded.guard_offset,
    guard_min_ms = excluded.guard_min_ms
"""


class SQLiteViewStore(BaseViewStore):
    """A view's counters and offsets in one SQLite file (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        totals_series: Iterable[str],
        *,
        namespace: str | None = None,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout_s: float = 30.0,
        time_index: bool = True,
    ) -> None:
        """Open (creating if needed) the file; `namespace` guards against two views sharing it."""
        super().__init__(totals_series)
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be 'FULL' or 'NORMAL'")
        self.path = Path(path)
        self._lock = threading.RLock()
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
            self._ensure_schema(namespace)
            self._ensure_time_index(time_index)
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(f"cannot initialise view store {self.path}: {exc}") from exc
        except StoreError:
            self._db.close()
            raise

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection; idempotent."""
        with self._lock:
            self._db.close()

    def _ensure_schema(self, namespace: str | None) -> None:
        """Create tables once, then check the file belongs to this view and layout version."""
        meta = self._meta_if_present()
        if int(meta.get("schema_version", "0")) < SCHEMA_VERSION:
            # New file, or an older layout: every statement is idempotent (IF NOT EXISTS).
            with self._write():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?1) "
                    "ON CONFLICT (key) DO UPDATE SET value = ?1",
                    (str(SCHEMA_VERSION),),
                )
                self._db.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('totals_series', ?)",
                    (json.dumps(sorted(self.totals_series)),),
                )
                if namespace is not None:
                    self._db.execute(
                        "INSERT OR IGNORE INTO meta (key, value) VALUES ('namespace', ?)",
                        (namespace,),
                    )
            meta = self._meta_if_present()
        version = int(meta.get("schema_version", "0"))
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"view store {self.path} has layout v{version}, newer than this logstream "
                f"(v{SCHEMA_VERSION}): upgrade logstream"
            )
        stored_ns = meta.get("namespace")
        if namespace is not None and stored_ns is not None and stored_ns != namespace:
            raise StoreError(
                f"view store {self.path} belongs to view {stored_ns!r}, not {namespace!r}: "
                "give each view its own file"
            )
        stored_totals = meta.get("totals_series")
        if stored_totals is not None and frozenset(json.loads(stored_totals)) != self.totals_series:
            raise StoreError(
                f"view store {self.path} keeps totals for {json.loads(stored_totals)}, "
                f"the view now asks for {sorted(self.totals_series)}: bump the view version"
            )

    def _ensure_time_index(self, wanted: bool) -> None:
        """Create or drop the (series, bucket) index so that it exists exactly when wanted."""
        present = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'buckets_by_time'"
        ).fetchone()
        if wanted and not present:
            with self._write():
                self._db.execute(
                    "CREATE INDEX IF NOT EXISTS buckets_by_time ON buckets (series, bucket_ms)"
                )
        elif present and not wanted:
            with self._write():
                self._db.execute("DROP INDEX IF EXISTS buckets_by_time")

    def _meta_if_present(self) -> dict[str, str]:
        exists = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if not exists:
            return {}
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE takes the file's write lock up front.

        On any failure, the COMMIT included, the transaction is rolled back if it is still
        open, so the connection is clean for the next attempt: the runtime retries the same
        flush after a full disk or a busy file, and a transaction left open would turn that
        retry into "cannot start a transaction within a transaction"."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

    def _rollback(self) -> None:
        """Roll back whatever is open; SQLite may have done it already (SQLITE_FULL and I/O
        errors end the transaction), in which case there is nothing to do."""
        if self._db.in_transaction:
            with suppress(sqlite3.Error):  # the original error is the one worth reporting
                self._db.execute("ROLLBACK")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read snapshot over several statements; maps driver errors to StoreError."""
        with self._lock:
            try:
                self._db.execute("BEGIN")
                try:
                    yield self._db
                finally:
                    self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read view store {self.path}: {exc}") from exc

    # -- writes --------------------------------------------------------------------------

    def commit(self, flush: Flush) -> None:
        """Apply a flush atomically; StaleOffsetError (nothing applied) if fenced."""
        self._check_flush(flush)
        # Writers are serialised by BEGIN IMMEDIATE: no lock order to keep, so no sorting.
        rows = delta_rows(flush.deltas)
        totals = total_deltas(flush.deltas, self.totals_series)
        try:
            with self._write() as db:
                for topic, partition, expected, new in sorted(
                    flush.positions, key=lambda p: (p[0], p[1])
                ):
                    row = db.execute(
                        "SELECT next_offset FROM positions WHERE topic = ? AND partition = ?",
                        (topic, partition),
                    ).fetchone()
                    stored = None if row is None else int(row[0])
                    if stored != expected:
                        raise StaleOffsetError(
                            f"{topic}[{partition}] is at offset {stored}, the batch expected "
                            f"{expected}: another consumer or a reset moved it; re-seek"
                        )
                    if row is None:
                        db.execute(
                            "INSERT INTO positions (topic, partition, next_offset) "
                            "VALUES (?, ?, ?)",
                            (topic, partition, new),
                        )
                    else:
                        db.execute(_ADVANCE_POSITION, (new, topic, partition))
                if rows:
                    db.execute(_UPSERT_BUCKETS, (orjson.dumps(rows),))
                if totals:
                    db.execute(_UPSERT_TOTALS, (orjson.dumps(totals),))
                if flush.max_event_ms is not None:
                    db.execute(
                        "INSERT INTO meta (key, value) VALUES ('max_event_ms', ?1) "
                        "ON CONFLICT (key) DO UPDATE SET value = ?1 "
                        "WHERE CAST(value AS INTEGER) < ?1",
                        (flush.max_event_ms,),
                    )
                if flush.dlq_increment:
                    db.execute(
                        "UPDATE meta SET value = CAST(value AS INTEGER) + ? "
                        "WHERE key = 'dlq_count'",
                        (flush.dlq_increment,),
                    )
                if flush.event_ids_expire:
                    db.executemany(
                        "DELETE FROM event_ids "
                        "WHERE topic = ? AND partition = ? AND to_offset <= ?",
                        flush.event_ids_expire,
                    )
                if flush.event_ids:
                    db.executemany(
                        "INSERT OR REPLACE INTO event_ids "
                        "(topic, partition, from_offset, to_offset, payload) "
                        "VALUES (?, ?, ?, ?, ?)",
                        [
                            (r.topic, r.partition, r.from_offset, r.to_offset, r.payload)
                            for r in flush.event_ids
                        ],
                    )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot commit to view store {self.path}: {exc}") from exc

    def reset(self, reset: Reset) -> None:
        """Drop state from a time (or all of it) and replace positions, atomically."""
        self._check_reset(reset)
        now_ms = int(time.time() * 1000)
        try:
            with self._write() as db:
                if reset.drop_from_ms is None:
                    db.execute("DELETE FROM buckets")
                    db.execute("DELETE FROM totals")
                    db.execute("DELETE FROM positions")
                    db.execute("DELETE FROM event_ids")
                    db.execute("DELETE FROM meta WHERE key = 'max_event_ms'")
                else:
                    self._drop_from(db, reset.drop_from_ms)
                db.executemany(
                    "DELETE FROM event_ids WHERE topic = ? AND partition = ? AND to_offset > ?",
                    [(p.topic, p.partition, p.next_offset) for p in reset.positions],
                )
                db.executemany(
                    _REPLACE_POSITION,
                    [
                        (p.topic, p.partition, p.next_offset, p.guard_offset, p.guard_min_ms)
                        for p in reset.positions
                    ],
                )
                db.executemany(
                    "INSERT INTO skipped (topic, partition, from_offset, to_offset, recorded_ms) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(*r, now_ms) for r in reset.skipped],
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot reset view store {self.path}: {exc}") from exc

    @staticmethod
    def _drop_from(db: sqlite3.Connection, drop_from_ms: int) -> None:
        """Delete buckets >= drop_from_ms; recompute the totals they fed from what is left."""
        db.execute("DROP TABLE IF EXISTS temp.affected")
        db.execute(
            "CREATE TEMP TABLE affected AS SELECT DISTINCT b.series, b.key "
            "FROM buckets b JOIN totals t ON t.series = b.series AND t.key = b.key "
            "WHERE b.bucket_ms >= ?",
            (drop_from_ms,),
        )
        db.execute("DELETE FROM buckets WHERE bucket_ms >= ?", (drop_from_ms,))
        db.execute(
            "DELETE FROM totals WHERE (series, key) IN (SELECT series, key FROM temp.affected) "
            "AND NOT EXISTS (SELECT 1 FROM buckets b "
            "WHERE b.series = totals.series AND b.key = totals.key)"
        )
        db.execute(
            "UPDATE totals SET (count, first_ms, last_ms) = ("
            "  SELECT sum(b.count), min(b.first_ms), max(b.last_ms) FROM buckets b"
            "  WHERE b.series = totals.series AND b.key = totals.key) "
            "WHERE (series, key) IN (SELECT series, key FROM temp.affected)"
        )
        db.execute("DROP TABLE temp.affected")

    # -- reads ---------------------------------------------------------------------------

    def positions(self) -> dict[tuple[str, int], Position]:
        """Every stored partition position."""
        with self._read() as db:
            return self._positions(db)

    def event_id_ranges(self, topic: str, partition: int, since_offset: int) -> list[EventIdRange]:
        """Stored event-id ranges of a partition ending after `since_offset`, by offset."""
        with self._read() as db:
            rows = db.execute(
                "SELECT from_offset, to_offset, payload FROM event_ids "
                "WHERE topic = ? AND partition = ? AND to_offset > ? ORDER BY from_offset",
                (topic, partition, since_offset),
            ).fetchall()
        return [EventIdRange(topic, partition, r[0], r[1], bytes(r[2])) for r in rows]

    @staticmethod
    def _positions(db: sqlite3.Connection) -> dict[tuple[str, int], Position]:
        rows = db.execute(
            "SELECT topic, partition, next_offset, guard_offset, guard_min_ms FROM positions "
            "ORDER BY topic, partition"
        ).fetchall()
        return {(r[0], r[1]): Position(r[0], r[1], r[2], r[3], r[4]) for r in rows}

    def total(self, series: str, key: str) -> Counter | None:
        """All-time counter of a key: the totals row, or a sum of its buckets."""
        with self._read() as db:
            if series in self.totals_series:
                row = db.execute(
                    "SELECT count, first_ms, last_ms FROM totals WHERE series = ? AND key = ?",
                    (series, key),
                ).fetchone()
            else:
                row = db.execute(
                    "SELECT sum(count), min(first_ms), max(last_ms) FROM buckets "
                    "WHERE series = ? AND key = ?",
                    (series, key),
                ).fetchone()
        if row is None or row[0] is None:
            return None
        return Counter(int(row[0]), int(row[1]), int(row[2]))

    def top(
        self, series: str, limit: int, since_ms: int | None = None, until_ms: int | None = None
    ) -> list[tuple[str, int]]:
        """Keys by count desc, key asc: the totals index when unranged, else summed buckets."""
        if limit <= 0:
            return []
        with self._read() as db:
            if since_ms is None and until_ms is None and series in self.totals_series:
                rows = db.execute(
                    "SELECT key, count FROM totals WHERE series = ? "
                    "ORDER BY count DESC, key ASC LIMIT ?",
                    (series, limit),
                ).fetchall()
            else:
                rows = db.execute(
                    "SELECT key, sum(count) AS c FROM buckets "
                    "WHERE series = ? AND bucket_ms >= ? AND bucket_ms < ? "
                    "GROUP BY key ORDER BY c DESC, key ASC LIMIT ?",
                    (series, _lo(since_ms), _hi(until_ms), limit),
                ).fetchall()
        return [(str(k), int(c)) for k, c in rows]

    def windows(
        self,
        series: str,
        key: str,
        size_ms: int,
        since_ms: int,
        until_ms: int,
        limit: int,
        after_start_ms: int | None = None,
    ) -> list[tuple[int, int]]:
        """Non-empty epoch-aligned windows of one key, ascending, after the cursor."""
        lo, hi = window_bounds(size_ms, since_ms, until_ms, after_start_ms)
        if limit <= 0 or lo >= hi:
            return []
        with self._read() as db:
            rows = db.execute(
                "SELECT bucket_ms - ((bucket_ms % ?1) + ?1) % ?1 AS ws, sum(count) "
                "FROM buckets WHERE series = ?2 AND key = ?3 "
                "AND bucket_ms >= ?4 AND bucket_ms < ?5 "
                "GROUP BY ws ORDER BY ws LIMIT ?6",
                (size_ms, series, key, lo, hi, limit),
            ).fetchall()
        return [(int(ws), int(c)) for ws, c in rows]

    def bucket_rows(self, series: str | None = None) -> list[BucketRow]:
        """Every bucket row sorted by (series, key, bucket_ms)."""
        sql = "SELECT series, key, bucket_ms, count, first_ms, last_ms FROM buckets"
        with self._read() as db:
            if series is None:
                rows = db.execute(sql + " ORDER BY series, key, bucket_ms").fetchall()
            else:
                rows = db.execute(
                    sql + " WHERE series = ? ORDER BY series, key, bucket_ms", (series,)
                ).fetchall()
        return [cast(BucketRow, tuple(r)) for r in rows]

    def totals_rows(self, series: str | None = None) -> list[TotalRow]:
        """Every totals row sorted by (series, key)."""
        sql = "SELECT series, key, count, first_ms, last_ms FROM totals"
        with self._read() as db:
            if series is None:
                rows = db.execute(sql + " ORDER BY series, key").fetchall()
            else:
                rows = db.execute(
                    sql + " WHERE series = ? ORDER BY series, key", (series,)
                ).fetchall()
        return [cast(TotalRow, tuple(r)) for r in rows]

    def stats(self) -> StoreStats:
        """Positions, max event time, DLQ count and skipped ranges from one snapshot."""
        with self._read() as db:
            positions = self._positions(db)
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            skipped: list[SkippedRange] = [
                (str(t), int(p), int(f), int(u))
                for t, p, f, u in db.execute(
                    "SELECT topic, partition, from_offset, to_offset FROM skipped ORDER BY id"
                )
            ]
        max_ms = meta.get("max_event_ms")
        return StoreStats(
            positions=positions,
            max_event_ms=None if max_ms is None else int(max_ms),
            dlq_count=int(meta.get("dlq_count", 0)),
            skipped=skipped,
        )


_MIN_I64 = -(2**63)
_MAX_I64 = 2**63 - 1


def _lo(since_ms: int | None) -> int:
    return _MIN_I64 if since_ms is None else since_ms


def _hi(until_ms: int | None) -> int:
    return _MAX_I64 if until_ms is None else until_ms
