"""The scale-out view store: one PostgreSQL schema per view, shared by all its consumers (the
PostgreSQL dialect of `logstream.stores.sql`, which holds everything both stores share).

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
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from logstream.aggregates import Aggregate
from logstream.errors import StoreError
from logstream.redact import redact, register_secrets, url_password
from logstream.stores.base import safe_name
from logstream.stores.sql import SQLViewStore, Tx

__all__ = ["PostgresViewStore", "drop_schema", "pg_store_error", "schema_name"]

_MAX_IDENTIFIER = 63
_RESERVED = frozenset({"public", "information_schema"})

_TYPES = {
    "text": "text",
    "key": 'text COLLATE "C"',
    "bigint": "bigint",
    "int": "integer",
    "number": "numeric",
    "blob": "bytea",
    "serial": "bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    "kv_suffix": "",
    "buckets_suffix": " WITH (fillfactor = 90)",
}
_TEMP = {"buckets": "logstream_deltas", "totals": "logstream_total_deltas"}


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


def _regclass(conn: psycopg.Connection[Any] | psycopg.Cursor[Any], name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()
    return row is not None and row[0] is not None


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
            if _regclass(conn, f'"{schema}".meta'):
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


class _PgTx:
    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self.cur = cur

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.cur.execute(query.encode(), tuple(params))
        return self.cur.fetchall() if self.cur.description else []

    def run(self, query: str, params: Sequence[Any] = ()) -> None:
        self.cur.execute(query.encode(), tuple(params))

    def many(self, query: str, params: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(p) for p in params]
        if rows:
            self.cur.executemany(query.encode(), rows)


class PostgresViewStore(SQLViewStore):
    """A view's counters, aggregates and offsets in one PostgreSQL schema.

    One connection per store object, serialized by a lock so threads may share the object;
    a broken connection is replaced on the next call.
    """

    types = _TYPES

    def __init__(
        self,
        dsn: str,
        namespace: str,
        totals_series: Iterable[str],
        *,
        time_index: bool = True,
        aggregates: Sequence[Aggregate] = (),
    ) -> None:
        """Connect and create the schema if needed (idempotent, safe from many processes)."""
        super().__init__(totals_series, aggregates, namespace, time_index)
        self.namespace: str = namespace
        self.schema = schema_name(namespace)
        self.where = f"schema {self.schema!r}"
        self._dsn = dsn
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        self._ready = False
        with self._lock:
            self._connection()

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
            conn.execute("SELECT set_config('search_path', %s, false)", (f'"{self.schema}"',))
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(f"cannot initialise {self.where}: {exc}") from exc
        self._conn = conn
        try:
            if not self._ready:
                self._ensure_layout()
                self._ready = True
            for table, temp in _TEMP.items():
                conn.execute(
                    f"CREATE TEMP TABLE IF NOT EXISTS {temp} (LIKE {table} INCLUDING DEFAULTS) "
                    "ON COMMIT DELETE ROWS"
                )
        except (psycopg.Error, StoreError) as exc:
            self._conn = None
            conn.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot initialise {self.where}: {exc}") from exc
        return conn

    # -- dialect hooks -------------------------------------------------------------------

    @contextmanager
    def _transaction(self, what: str, *, write: bool, snapshot: bool = False) -> Iterator[Tx]:
        """One transaction on the live connection; driver errors become StoreError."""
        with self._lock:
            conn = self._conn if not self._ready else self._connection()
            assert conn is not None
            try:
                with conn.transaction(), conn.cursor() as cur:
                    if snapshot:
                        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    yield _PgTx(cur)
            except psycopg.Error as exc:
                raise StoreError(f"cannot {what} {self.where}: {exc}") from exc

    def _snapshot(self) -> Any:
        return self._transaction("read", write=False, snapshot=True)

    def _serialize_layout(self, tx: Tx) -> None:
        # Concurrent CREATE ... IF NOT EXISTS can still collide in the catalogue.
        tx.run("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.schema,))
        tx.run(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')

    def _migrate_dialect(self, tx: Tx, version: int) -> None:
        """Layouts before v3 kept the skipped ranges' time as `recorded_at timestamptz`;
        every dialect now keeps `recorded_ms` (ms since the epoch, like every other time)."""
        found = tx.rows(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = 'skipped' AND column_name = 'recorded_at'",
            (self.schema,),
        )
        if found:
            tx.run("ALTER TABLE skipped RENAME COLUMN recorded_at TO recorded_ms")
            tx.run(
                "ALTER TABLE skipped ALTER COLUMN recorded_ms DROP DEFAULT, "
                "ALTER COLUMN recorded_ms TYPE bigint "
                "USING (extract(epoch FROM recorded_ms) * 1000)::bigint"
            )

    def _lock_for_reset(self, tx: Tx) -> None:
        tx.run("LOCK TABLE positions IN EXCLUSIVE MODE")

    def _wipe(self, tx: Tx, tables: list[str]) -> None:
        tx.run(f"TRUNCATE {', '.join(t for t in tables if t != 'positions')}")
        if "positions" in tables:
            tx.run("DELETE FROM positions")

    def _has_table(self, tx: Tx, name: str) -> bool:
        return _regclass(tx.cur, f'"{self.schema}".{name}')  # type: ignore[attr-defined]

    def _has_time_index(self, tx: Tx) -> bool:
        return self._has_table(tx, "buckets_by_time")

    def _index_name(self, name: str) -> str:
        return f'"{self.schema}".{name}'

    @staticmethod
    def _number(value: Any) -> int | float:
        """numeric comes back as Decimal: an integer when it has no fraction digits."""
        if isinstance(value, Decimal):
            exponent = value.as_tuple().exponent
            return int(value) if isinstance(exponent, int) and exponent >= 0 else float(value)
        return value

    def _upsert(
        self, tx: Tx, table: str, rows: list[tuple[Any, ...]], returning: list[str]
    ) -> list[tuple[Any, ...]]:
        """COPY into the session's temp table, then one INSERT ... SELECT ... ORDER BY."""
        cur: psycopg.Cursor[Any] = tx.cur  # type: ignore[attr-defined]
        cols = ", ".join(self.columns_of(table))
        temp = _TEMP[table]
        with cur.copy(f"COPY {temp} ({cols}) FROM STDIN".encode()) as copy:
            for row in rows:
                copy.write_row(row)
        keys = "series, key, bucket_ms" if table == "buckets" else "series, key"
        query = (
            f"INSERT INTO {table} AS t ({cols}) SELECT {cols} FROM {temp} ORDER BY {keys} "
            f"{self._upsert_sql(table)}"
        )
        if returning:
            query += f" RETURNING {', '.join(returning)}"
        cur.execute(query.encode())
        return cur.fetchall() if returning else []

    def _write_back(self, tx: Tx, table: str, column: str, rows: list[tuple[Any, ...]]) -> None:
        nkeys = len(rows[0]) - 1
        keys = ["series", "key", "bucket_ms"][:nkeys]
        types = ["text", "text", "bigint"][:nkeys]
        arrays = ", ".join(f"%s::{t}[]" for t in [*types, "bytea"])
        names = ", ".join([*keys, "v"])
        match = " AND ".join(
            f"{table}.{k} = u.{k}" + (' COLLATE "C"' if k != "bucket_ms" else "") for k in keys
        )
        tx.run(
            f"UPDATE {table} SET {column} = u.v FROM unnest({arrays}) AS u({names}) WHERE {match}",
            [list(col) for col in zip(*rows, strict=True)],
        )

    def _temp_affected(self, tx: Tx, select: str, params: Sequence[Any]) -> None:
        tx.run(f"CREATE TEMP TABLE logstream_affected ON COMMIT DROP AS {select}", params)
