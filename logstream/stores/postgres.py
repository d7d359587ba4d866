"""The scale-out view store: one PostgreSQL schema per view, shared by all its consumers.

Several consumer processes of one group (each owning some partitions) commit to the same
schema concurrently. Safety rests on three rules:

* Fencing: each flush moves its partitions' rows with a conditional
  `UPDATE positions ... WHERE next_offset = expected RETURNING` (or an
  `INSERT ... ON CONFLICT DO NOTHING RETURNING` when no row may exist yet). The row lock it
  takes is held to commit, and PostgreSQL re-checks the condition against a concurrently
  committed version, so a zombie consumer or a flush racing a reset gets StaleOffsetError.
* No deadlocks: every transaction locks positions first (sorted), then bucket rows and
  totals rows in one global order (series, key, bucket_ms under COLLATE "C"), then meta.
* Resets take `LOCK TABLE positions IN EXCLUSIVE MODE` first: they wait for in-flight
  flushes and hold new ones at their first statement, before touching any counter.

Deltas travel by COPY into a session temp table and one `INSERT ... SELECT ... ORDER BY ...
ON CONFLICT DO UPDATE` per table, which is far faster than row-by-row upserts.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import psycopg
from psycopg import sql

from logstream.errors import StaleOffsetError, StoreError
from logstream.redact import redact, register_secrets, url_password
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
    safe_name,
    sorted_deltas,
    window_bounds,
)

__all__ = ["PostgresViewStore", "drop_schema", "pg_store_error", "schema_name"]

_MAX_IDENTIFIER = 63
_RESERVED = frozenset({"public", "information_schema"})

_EVENT_IDS_DDL = """CREATE TABLE IF NOT EXISTS {schema}.event_ids (
        topic       text NOT NULL,
        partition   integer NOT NULL,
        from_offset bigint NOT NULL,
        to_offset   bigint NOT NULL,
        payload     bytea NOT NULL,
        PRIMARY KEY (topic, partition, from_offset))"""

_DDL = [
    "CREATE SCHEMA IF NOT EXISTS {schema}",
    """CREATE TABLE IF NOT EXISTS {schema}.meta (
        key   text PRIMARY KEY,
        value text NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS {schema}.buckets (
        series    text COLLATE "C" NOT NULL,
        key       text COLLATE "C" NOT NULL,
        bucket_ms bigint NOT NULL,
        count     bigint NOT NULL,
        first_ms  bigint NOT NULL,
        last_ms   bigint NOT NULL,
        PRIMARY KEY (series, key, bucket_ms)) WITH (fillfactor = 90)""",
    """CREATE TABLE IF NOT EXISTS {schema}.totals (
        series   text COLLATE "C" NOT NULL,
        key      text COLLATE "C" NOT NULL,
        count    bigint NOT NULL,
        first_ms bigint NOT NULL,
        last_ms  bigint NOT NULL,
        PRIMARY KEY (series, key))""",
    "CREATE INDEX IF NOT EXISTS totals_by_count ON {schema}.totals (series, count DESC, key)",
    """CREATE TABLE IF NOT EXISTS {schema}.positions (
        topic        text NOT NULL,
        partition    integer NOT NULL,
        next_offset  bigint NOT NULL,
        guard_offset bigint,
        guard_min_ms bigint,
        PRIMARY KEY (topic, partition))""",
    """CREATE TABLE IF NOT EXISTS {schema}.skipped (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        topic       text NOT NULL,
        partition   integer NOT NULL,
        from_offset bigint NOT NULL,
        to_offset   bigint NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now())""",
    _EVENT_IDS_DDL,
]

_TEMP_DELTAS = """CREATE TEMP TABLE IF NOT EXISTS logstream_deltas (
    series    text COLLATE "C" NOT NULL,
    key       text COLLATE "C" NOT NULL,
    bucket_ms bigint NOT NULL,
    count     bigint NOT NULL,
    first_ms  bigint NOT NULL,
    last_ms   bigint NOT NULL) ON COMMIT DELETE ROWS"""

_COPY_DELTAS = "COPY logstream_deltas (series, key, bucket_ms, count, first_ms, last_ms) FROM STDIN"

_MERGE_BUCKETS = """
INSERT INTO buckets AS b (series, key, bucket_ms, count, first_ms, last_ms)
SELECT series, key, bucket_ms, count, first_ms, last_ms FROM logstream_deltas
ORDER BY series, key, bucket_ms
ON CONFLICT (series, key, bucket_ms) DO UPDATE SET
    count = b.count + excluded.count,
    first_ms = LEAST(b.first_ms, excluded.first_ms),
    last_ms = GREATEST(b.last_ms, excluded.last_ms)
"""

_MERGE_TOTALS = """
INSERT INTO totals AS t (series, key, count, first_ms, last_ms)
SELECT series, key, sum(count), min(first_ms), max(last_ms) FROM logstream_deltas
WHERE series = ANY(%s)
GROUP BY series, key
ORDER BY series, key
ON CONFLICT (series, key) DO UPDATE SET
    count = t.count + excluded.count,
    first_ms = LEAST(t.first_ms, excluded.first_ms),
    last_ms = GREATEST(t.last_ms, excluded.last_ms)
"""

_ADVANCE_POSITION = """
UPDATE positions SET
    next_offset = %(new)s::bigint,
    guard_offset = CASE WHEN guard_offset IS NOT NULL AND %(new)s::bigint >= guard_offset
                        THEN NULL ELSE guard_offset END,
    guard_min_ms = CASE WHEN guard_offset IS NOT NULL AND %(new)s::bigint >= guard_offset
                        THEN NULL ELSE guard_min_ms END
WHERE topic = %(topic)s AND partition = %(partition)s AND next_offset = %(expected)s::bigint
RETURNING 1
"""

_CLAIM_POSITION = """
INSERT INTO positions (topic, partition, next_offset) VALUES (%s, %s, %s)
ON CONFLICT (topic, partition) DO NOTHING
RETURNING 1
"""

_REPLACE_POSITION = """
INSERT INTO positions (topic, partition, next_offset, guard_offset, guard_min_ms)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (topic, partition) DO UPDATE SET
    next_offset = excluded.next_offset,
    guard_offset = excluded.guard_offset,
    guard_min_ms = excluded.guard_min_ms
"""

_MIN_I64 = -(2**63)
_MAX_I64 = 2**63 - 1


def schema_name(namespace: str) -> str:
    """The PostgreSQL schema of a view namespace: `likes-by-url@v2` -> `likes_by_url__v2`.

    Reserved names get a `v_` prefix and names over 63 bytes are cut and suffixed with a
    hash, so any namespace maps to a valid, stable identifier.
    """
    name = safe_name(namespace)
    if name in _RESERVED or name.startswith("pg_"):
        name = "v_" + name
    if len(name) > _MAX_IDENTIFIER:
        digest = hashlib.sha1(namespace.encode()).hexdigest()[:8]
        name = f"{name[: _MAX_IDENTIFIER - 9]}_{digest}"
    return name


def pg_store_error(dsn: str, what: str, exc: BaseException) -> StoreError:
    """A PostgreSQL failure as one StoreError line. libpq echoes parts of a malformed DSN:
    its password is masked whatever the message says."""
    register_secrets([url_password(dsn)])
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return StoreError(redact(f"{what}: {text or type(exc).__name__}"))


def _connect(dsn: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(dsn, autocommit=True, application_name="logstream")
    except psycopg.Error as exc:
        raise pg_store_error(dsn, "cannot connect to PostgreSQL", exc) from exc


def drop_schema(dsn: str, namespace: str) -> bool:
    """Drop a view's schema; True if it existed. Refuses a schema logstream did not create."""
    schema = schema_name(namespace)
    conn = _connect(dsn)
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (schema,))
            exists = conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)
            ).fetchone()
            if exists is None:
                return False
            owner = None
            if _has_meta(conn, schema):
                owner = conn.execute(
                    sql.SQL("SELECT value FROM {}.meta WHERE key = 'namespace'").format(
                        sql.Identifier(schema)
                    )
                ).fetchone()
            if owner is None or owner[0] != namespace:
                raise StoreError(
                    f"schema {schema!r} does not hold logstream view {namespace!r}; not dropping it"
                )
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
            return True
    except psycopg.Error as exc:
        raise StoreError(f"cannot drop schema {schema!r}: {exc}") from exc
    finally:
        conn.close()


def _has_time_index(conn: psycopg.Connection[Any], schema: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s)", (f'"{schema}".buckets_by_time',)).fetchone()
    return row is not None and row[0] is not None


def _has_meta(conn: psycopg.Connection[Any], schema: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s)", (f'"{schema}".meta',)).fetchone()
    return row is not None and row[0] is not None


class PostgresViewStore(BaseViewStore):
    """A view's counters and offsets in one PostgreSQL schema (see the module docstring).

    One connection per store object, serialized by a lock so threads may share the object;
    a broken connection is replaced on the next call.
    """

    def __init__(
        self,
        dsn: str,
        namespace: str,
        totals_series: Iterable[str],
        *,
        time_index: bool = True,
    ) -> None:
        """Connect and create the schema if needed (idempotent, safe from many processes)."""
        super().__init__(totals_series)
        self.time_index = time_index
        self.namespace = namespace
        self.schema = schema_name(namespace)
        self._dsn = dsn
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        with self._lock:
            self._connection()

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection; idempotent."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _connection(self) -> psycopg.Connection[Any]:
        """The live connection, (re)opened with schema and session setup as needed."""
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        conn = _connect(self._dsn)
        try:
            self._ensure_schema(conn)
            conn.execute("SELECT set_config('search_path', %s, false)", (f'"{self.schema}"',))
            conn.execute(_TEMP_DELTAS)
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(f"cannot initialise schema {self.schema!r}: {exc}") from exc
        except StoreError:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _ensure_time_index(self, conn: psycopg.Connection[Any], ident: sql.Identifier) -> None:
        """Create or drop the (series, bucket) index so that it exists exactly when wanted
        (checked first: no DDL, hence no table lock, when it is already right)."""
        present = _has_time_index(conn, self.schema)
        if self.time_index and not present:
            conn.execute(
                sql.SQL(
                    "CREATE INDEX IF NOT EXISTS buckets_by_time ON {}.buckets (series, bucket_ms)"
                ).format(ident)
            )
        elif present and not self.time_index:
            conn.execute(sql.SQL("DROP INDEX IF EXISTS {}.buckets_by_time").format(ident))

    def _ensure_schema(self, conn: psycopg.Connection[Any]) -> None:
        ident = sql.Identifier(self.schema)
        with conn.transaction():
            # Concurrent CREATE ... IF NOT EXISTS can still collide in the catalogue.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.schema,))
            if not _has_meta(conn, self.schema):
                for statement in _DDL:
                    conn.execute(sql.SQL(statement).format(schema=ident))
                initial = {
                    "schema_version": str(SCHEMA_VERSION),
                    "namespace": self.namespace,
                    "totals_series": json.dumps(sorted(self.totals_series)),
                    "dlq_count": "0",
                }
                conn.cursor().executemany(
                    sql.SQL(
                        "INSERT INTO {}.meta (key, value) VALUES (%s, %s) ON CONFLICT DO NOTHING"
                    ).format(ident),
                    list(initial.items()),
                )
            else:
                self._upgrade_layout(conn, ident)
            self._ensure_time_index(conn, ident)
            meta = dict(
                conn.execute(sql.SQL("SELECT key, value FROM {}.meta").format(ident)).fetchall()
            )
        version = int(meta.get("schema_version", "0"))
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"schema {self.schema!r} has layout v{version}, newer than this logstream "
                f"(v{SCHEMA_VERSION}): upgrade logstream"
            )
        if meta.get("namespace") != self.namespace:
            raise StoreError(
                f"schema {self.schema!r} belongs to view {meta.get('namespace')!r}, "
                f"not {self.namespace!r}: rename one of the views"
            )
        stored_totals = json.loads(meta.get("totals_series", "[]"))
        if frozenset(stored_totals) != self.totals_series:
            raise StoreError(
                f"schema {self.schema!r} keeps totals for {stored_totals}, the view now asks "
                f"for {sorted(self.totals_series)}: bump the view version"
            )

    @staticmethod
    def _upgrade_layout(conn: psycopg.Connection[Any], ident: sql.Identifier) -> None:
        """An older layout gains what it lacks (v2: event_ids); current and newer layouts
        are not touched (so a read-only role can open them; a newer one is refused later)."""
        row = conn.execute(
            sql.SQL("SELECT value FROM {}.meta WHERE key = 'schema_version'").format(ident)
        ).fetchone()
        if row is None or int(row[0]) >= SCHEMA_VERSION:
            return
        conn.execute(sql.SQL(_EVENT_IDS_DDL).format(schema=ident))
        conn.execute(
            sql.SQL("UPDATE {}.meta SET value = %s WHERE key = 'schema_version'").format(ident),
            (str(SCHEMA_VERSION),),
        )

    @contextmanager
    def _tx(self, what: str, *, snapshot: bool = False) -> Iterator[psycopg.Cursor[Any]]:
        """One transaction on the live connection; driver errors become StoreError."""
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    if snapshot:
                        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    yield cur
            except psycopg.Error as exc:
                raise StoreError(f"cannot {what} schema {self.schema!r}: {exc}") from exc

    # -- writes --------------------------------------------------------------------------

    def commit(self, flush: Flush) -> None:
        """Apply a flush atomically; StaleOffsetError (nothing applied) if fenced."""
        self._check_flush(flush)
        rows = sorted_deltas(flush.deltas)
        with self._tx("commit to") as cur:
            for topic, partition, expected, new in sorted(
                flush.positions, key=lambda p: (p[0], p[1])
            ):
                if expected is None:
                    cur.execute(_CLAIM_POSITION, (topic, partition, new))
                else:
                    cur.execute(
                        _ADVANCE_POSITION,
                        {"new": new, "topic": topic, "partition": partition, "expected": expected},
                    )
                if cur.fetchone() is None:
                    cur.execute(
                        "SELECT next_offset FROM positions WHERE topic = %s AND partition = %s",
                        (topic, partition),
                    )
                    found = cur.fetchone()
                    raise StaleOffsetError(
                        f"{topic}[{partition}] is at offset {None if found is None else found[0]}"
                        f", the batch expected {expected}: another consumer or a reset moved "
                        "it; re-seek"
                    )
            if rows:
                with cur.copy(_COPY_DELTAS) as copy:
                    for row in rows:
                        copy.write_row(row)
                cur.execute(_MERGE_BUCKETS)
                if self.totals_series:
                    cur.execute(_MERGE_TOTALS, (sorted(self.totals_series),))
            if flush.max_event_ms is not None:
                # Only rows that advance are touched, so the hot row is rarely locked.
                cur.execute(
                    "INSERT INTO meta AS m (key, value) VALUES ('max_event_ms', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value "
                    "WHERE m.value::bigint < excluded.value::bigint",
                    (str(flush.max_event_ms),),
                )
            if flush.dlq_increment:
                cur.execute(
                    "UPDATE meta SET value = (value::bigint + %s)::text WHERE key = 'dlq_count'",
                    (flush.dlq_increment,),
                )
            if flush.event_ids_expire:
                cur.executemany(
                    "DELETE FROM event_ids WHERE topic = %s AND partition = %s AND to_offset <= %s",
                    list(flush.event_ids_expire),
                )
            if flush.event_ids:
                cur.executemany(
                    "INSERT INTO event_ids (topic, partition, from_offset, to_offset, payload) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (topic, partition, from_offset) "
                    "DO UPDATE SET to_offset = excluded.to_offset, payload = excluded.payload",
                    [
                        (r.topic, r.partition, r.from_offset, r.to_offset, r.payload)
                        for r in flush.event_ids
                    ],
                )

    def reset(self, reset: Reset) -> None:
        """Drop state from a time (or all of it) and replace positions, atomically."""
        self._check_reset(reset)
        with self._tx("reset") as cur:
            cur.execute("LOCK TABLE positions IN EXCLUSIVE MODE")
            if reset.drop_from_ms is None:
                cur.execute("TRUNCATE buckets, totals, event_ids")
                cur.execute("DELETE FROM positions")
                cur.execute("DELETE FROM meta WHERE key = 'max_event_ms'")
            else:
                self._drop_from(cur, reset.drop_from_ms)
            if reset.positions:
                cur.executemany(
                    "DELETE FROM event_ids WHERE topic = %s AND partition = %s AND to_offset > %s",
                    [(p.topic, p.partition, p.next_offset) for p in reset.positions],
                )
            if reset.positions:
                cur.executemany(
                    _REPLACE_POSITION,
                    [
                        (p.topic, p.partition, p.next_offset, p.guard_offset, p.guard_min_ms)
                        for p in sorted(reset.positions, key=lambda p: (p.topic, p.partition))
                    ],
                )
            if reset.skipped:
                cur.executemany(
                    "INSERT INTO skipped (topic, partition, from_offset, to_offset) "
                    "VALUES (%s, %s, %s, %s)",
                    list(reset.skipped),
                )

    @staticmethod
    def _drop_from(cur: psycopg.Cursor[Any], drop_from_ms: int) -> None:
        """Delete buckets >= drop_from_ms; recompute the totals they fed from what is left."""
        cur.execute(
            "CREATE TEMP TABLE logstream_affected ON COMMIT DROP AS "
            "SELECT DISTINCT b.series, b.key FROM buckets b "
            "JOIN totals t ON t.series = b.series AND t.key = b.key "
            "WHERE b.bucket_ms >= %s",
            (drop_from_ms,),
        )
        cur.execute("DELETE FROM buckets WHERE bucket_ms >= %s", (drop_from_ms,))
        cur.execute(
            "DELETE FROM totals t USING logstream_affected a "
            "WHERE t.series = a.series AND t.key = a.key AND NOT EXISTS ("
            "  SELECT 1 FROM buckets b WHERE b.series = t.series AND b.key = t.key)"
        )
        cur.execute(
            "UPDATE totals t SET count = s.c, first_ms = s.f, last_ms = s.l FROM ("
            "  SELECT b.series, b.key, sum(b.count) AS c, min(b.first_ms) AS f,"
            "         max(b.last_ms) AS l"
            "  FROM buckets b JOIN logstream_affected a USING (series, key)"
            "  GROUP BY b.series, b.key) s "
            "WHERE t.series = s.series AND t.key = s.key"
        )

    # -- reads ---------------------------------------------------------------------------

    def positions(self) -> dict[tuple[str, int], Position]:
        """Every stored partition position."""
        with self._tx("read") as cur:
            return self._positions(cur)

    def event_id_ranges(self, topic: str, partition: int, since_offset: int) -> list[EventIdRange]:
        """Stored event-id ranges of a partition ending after `since_offset`, by offset."""
        with self._tx("read") as cur:
            cur.execute(
                "SELECT from_offset, to_offset, payload FROM event_ids "
                "WHERE topic = %s AND partition = %s AND to_offset > %s ORDER BY from_offset",
                (topic, partition, since_offset),
            )
            rows = cur.fetchall()
        return [EventIdRange(topic, partition, r[0], r[1], bytes(r[2])) for r in rows]

    @staticmethod
    def _positions(cur: psycopg.Cursor[Any]) -> dict[tuple[str, int], Position]:
        cur.execute(
            "SELECT topic, partition, next_offset, guard_offset, guard_min_ms FROM positions "
            "ORDER BY topic, partition"
        )
        return {(r[0], r[1]): Position(r[0], r[1], r[2], r[3], r[4]) for r in cur.fetchall()}

    def total(self, series: str, key: str) -> Counter | None:
        """All-time counter of a key: the totals row, or a sum of its buckets."""
        with self._tx("read") as cur:
            if series in self.totals_series:
                cur.execute(
                    "SELECT count, first_ms, last_ms FROM totals WHERE series = %s AND key = %s",
                    (series, key),
                )
            else:
                cur.execute(
                    "SELECT sum(count), min(first_ms), max(last_ms) FROM buckets "
                    "WHERE series = %s AND key = %s",
                    (series, key),
                )
            row = cur.fetchone()
        if row is None or row[0] is None:
            return None
        return Counter(int(row[0]), int(row[1]), int(row[2]))

    def top(
        self, series: str, limit: int, since_ms: int | None = None, until_ms: int | None = None
    ) -> list[tuple[str, int]]:
        """Keys by count desc, key asc: the totals index when unranged, else summed buckets."""
        if limit <= 0:
            return []
        with self._tx("read") as cur:
            if since_ms is None and until_ms is None and series in self.totals_series:
                cur.execute(
                    "SELECT key, count FROM totals WHERE series = %s "
                    "ORDER BY count DESC, key ASC LIMIT %s",
                    (series, limit),
                )
            else:
                cur.execute(
                    "SELECT key, sum(count) AS c FROM buckets "
                    "WHERE series = %s AND bucket_ms >= %s AND bucket_ms < %s "
                    "GROUP BY key ORDER BY c DESC, key ASC LIMIT %s",
                    (
                        series,
                        _MIN_I64 if since_ms is None else since_ms,
                        _MAX_I64 if until_ms is None else until_ms,
                        limit,
                    ),
                )
            return [(str(k), int(c)) for k, c in cur.fetchall()]

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
        with self._tx("read") as cur:
            cur.execute(
                "SELECT bucket_ms - ((bucket_ms %% %(size)s::bigint) + %(size)s::bigint) "
                "%% %(size)s::bigint AS ws, sum(count) "
                "FROM buckets WHERE series = %(series)s AND key = %(key)s "
                "AND bucket_ms >= %(lo)s::bigint AND bucket_ms < %(hi)s::bigint "
                "GROUP BY ws ORDER BY ws LIMIT %(limit)s",
                {"size": size_ms, "series": series, "key": key, "lo": lo, "hi": hi, "limit": limit},
            )
            return [(int(ws), int(c)) for ws, c in cur.fetchall()]

    def bucket_rows(self, series: str | None = None) -> list[BucketRow]:
        """Every bucket row sorted by (series, key, bucket_ms)."""
        with self._tx("read") as cur:
            cur.execute(
                "SELECT series, key, bucket_ms, count, first_ms, last_ms FROM buckets "
                "WHERE %(s)s::text IS NULL OR series = %(s)s ORDER BY series, key, bucket_ms",
                {"s": series},
            )
            return [cast(BucketRow, tuple(r)) for r in cur.fetchall()]

    def totals_rows(self, series: str | None = None) -> list[TotalRow]:
        """Every totals row sorted by (series, key)."""
        with self._tx("read") as cur:
            cur.execute(
                "SELECT series, key, count, first_ms, last_ms FROM totals "
                "WHERE %(s)s::text IS NULL OR series = %(s)s ORDER BY series, key",
                {"s": series},
            )
            return [cast(TotalRow, tuple(r)) for r in cur.fetchall()]

    def stats(self) -> StoreStats:
        """Positions, max event time, DLQ count and skipped ranges from one snapshot."""
        with self._tx("read", snapshot=True) as cur:
            positions = self._positions(cur)
            cur.execute("SELECT key, value FROM meta")
            meta = dict(cur.fetchall())
            cur.execute("SELECT topic, partition, from_offset, to_offset FROM skipped ORDER BY id")
            skipped: list[SkippedRange] = [
                (str(t), int(p), int(f), int(u)) for t, p, f, u in cur.fetchall()
            ]
        max_ms = meta.get("max_event_ms")
        return StoreStats(
            positions=positions,
            max_event_ms=None if max_ms is None else int(max_ms),
            dlq_count=int(meta.get("dlq_count", 0)),
            skipped=skipped,
        )
