"""The one SQL implementation of a view store; SQLite and PostgreSQL supply only a dialect.

What is shared (this module): the layout and its checks and migrations, fencing, the merge
rules of every aggregate kind, resets and backfills, and every query. What a dialect
supplies (`sqlite.py`, `postgres.py`): connections and transactions, column types, the bulk
upsert of a flush's rows (SQLite: one `json_each` statement; PostgreSQL: COPY into a temp
table and one `INSERT ... SELECT ... ORDER BY`), writing merged sketches back, and the
locks a reset takes.

Statements are written in psycopg's `%s` style; the SQLite dialect rewrites them to `?`.

Distinct (HLL) columns cannot merge in SQL: the upsert keeps the stored sketch and returns
it, and the union with the flush's sketch is written back in the same transaction (the
upsert locked the row, so concurrent PostgreSQL writers cannot lose an update).
"""

from __future__ import annotations

import json
import time
from abc import abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, cast

from logstream.aggregate_states import (
    Folder,
    answer,
    check_aggregates,
    merge_all,
    spec_of,
    union_all,
    union_bytes,
)
from logstream.aggregates import Aggregate, Kind
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
    SeriesKey,
    SkippedRange,
    StoreStats,
    Summary,
    TotalRow,
    window_bounds,
)
from logstream.stores.layout import Layout

__all__ = ["SQLViewStore", "Tx"]

MIN_I64 = -(2**63)
MAX_I64 = 2**63 - 1

_BASE_BUCKET = ["series", "key", "bucket_ms", "count", "first_ms", "last_ms"]
_BASE_TOTAL = ["series", "key", "count", "first_ms", "last_ms"]
_KEYS = {"buckets": ["series", "key", "bucket_ms"], "totals": ["series", "key"]}


class Tx(Protocol):
    """One open transaction, as the shared code sees it."""

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def run(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    def many(self, sql: str, params: Iterable[Sequence[Any]]) -> None: ...


def _ddl(types: Mapping[str, str], layout: Layout) -> list[str]:
    """Every table of layout v3, in abstract form (`{t:...}` types, `{ck}` key collation)."""
    agg_cols = "".join(
        f",\n    {c.name} {types[c.type]}"
        + (f" NOT NULL DEFAULT {c.not_null_default}" if c.not_null_default else "")
        for c in layout.columns
    )
    text, ckey = types["text"], types["key"]
    big, integer = types["bigint"], types["int"]
    return [
        f"CREATE TABLE IF NOT EXISTS meta (key {text} PRIMARY KEY, value {text} NOT NULL)"
        + types["kv_suffix"],
        f"""CREATE TABLE IF NOT EXISTS buckets (
    series {ckey} NOT NULL, key {ckey} NOT NULL, bucket_ms {big} NOT NULL,
    count {big} NOT NULL, first_ms {big} NOT NULL, last_ms {big} NOT NULL{agg_cols},
    PRIMARY KEY (series, key, bucket_ms)){types["buckets_suffix"]}""",
        f"""CREATE TABLE IF NOT EXISTS totals (
    series {ckey} NOT NULL, key {ckey} NOT NULL,
    count {big} NOT NULL, first_ms {big} NOT NULL, last_ms {big} NOT NULL{agg_cols},
    PRIMARY KEY (series, key)){types["kv_suffix"]}""",
        "CREATE INDEX IF NOT EXISTS totals_by_count ON totals (series, count DESC, key)",
        f"""CREATE TABLE IF NOT EXISTS positions (
    topic {text} NOT NULL, partition {integer} NOT NULL, next_offset {big} NOT NULL,
    guard_offset {big}, guard_min_ms {big},
    PRIMARY KEY (topic, partition)){types["kv_suffix"]}""",
        f"""CREATE TABLE IF NOT EXISTS skipped (
    id {types["serial"]}, topic {text} NOT NULL, partition {integer} NOT NULL,
    from_offset {big} NOT NULL, to_offset {big} NOT NULL, recorded_ms {big} NOT NULL)""",
        EVENT_IDS_DDL.format(text=text, int=integer, bigint=big, blob=types["blob"])
        + types["kv_suffix"],
    ]


EVENT_IDS_DDL = """CREATE TABLE IF NOT EXISTS event_ids (
    topic {text} NOT NULL, partition {int} NOT NULL, from_offset {bigint} NOT NULL,
    to_offset {bigint} NOT NULL, payload {blob} NOT NULL,
    PRIMARY KEY (topic, partition, from_offset))"""

_ADVANCE_POSITION = """
UPDATE positions SET
    next_offset = CAST(%s AS BIGINT),
    guard_offset = CASE WHEN guard_offset IS NOT NULL AND CAST(%s AS BIGINT) >= guard_offset
                        THEN NULL ELSE guard_offset END,
    guard_min_ms = CASE WHEN guard_offset IS NOT NULL AND CAST(%s AS BIGINT) >= guard_offset
                        THEN NULL ELSE guard_min_ms END
WHERE topic = %s AND partition = %s AND next_offset = CAST(%s AS BIGINT)
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


class SQLViewStore(BaseViewStore):
    """A view's buckets, totals, aggregates and offsets in SQL tables (see module docstring).

    Subclasses set `where` (how messages name the store), `types`, `least`, `greatest`
    and implement the abstract hooks.
    """

    where: str
    types: Mapping[str, str]
    least = "least"
    greatest = "greatest"

    def __init__(
        self,
        totals_series: Iterable[str],
        aggregates: Sequence[Aggregate],
        namespace: str | None,
        time_index: bool,
    ) -> None:
        super().__init__(totals_series)
        self.aggregates = check_aggregates(aggregates)
        self.namespace = namespace
        self.time_index = time_index
        self.layout = Layout(self.aggregates)
        folder = Folder(self.aggregates)
        self._build_rows = folder.rows
        self._merge_cells = folder.merge
        self._bucket_cols = _BASE_BUCKET + self.layout.names
        self._total_cols = _BASE_TOTAL + self.layout.names

    # -- dialect hooks -------------------------------------------------------------------

    @abstractmethod
    def _transaction(self, what: str, *, write: bool) -> AbstractContextManager[Tx]:
        """One transaction (a write one takes the dialect's write lock); driver errors
        become StoreError("cannot {what} ...")."""

    @abstractmethod
    def _upsert(
        self, tx: Tx, table: str, rows: list[tuple[Any, ...]], returning: list[str]
    ) -> list[tuple[Any, ...]]:
        """Insert-or-merge `rows` (all columns of `table`) with the merge SET clauses of
        `_upsert_sql`; returns the `returning` columns of every row touched if asked."""

    @abstractmethod
    def _write_back(self, tx: Tx, table: str, column: str, rows: list[tuple[Any, ...]]) -> None:
        """Set `column` of the rows keyed by each row's leading key values to its last."""

    @abstractmethod
    def _temp_affected(self, tx: Tx, select: str, params: Sequence[Any]) -> None:
        """(Re)create temp table `logstream_affected` (series, key) from `select`."""

    def _serialize_layout(self, tx: Tx) -> None:
        """Hold concurrent openers off while the layout is created or migrated."""

    def _migrate_dialect(self, tx: Tx, version: int) -> None:
        """Dialect-specific steps of an in-place migration from `version`."""

    def _lock_for_reset(self, tx: Tx) -> None:
        """Wait for in-flight flushes and hold new ones (PostgreSQL)."""

    def _wipe(self, tx: Tx, tables: list[str]) -> None:
        for table in tables:
            tx.run(f"DELETE FROM {table}")

    @abstractmethod
    def _has_table(self, tx: Tx, name: str) -> bool: ...

    @abstractmethod
    def _has_time_index(self, tx: Tx) -> bool: ...

    @staticmethod
    def _number(value: Any) -> int | float:
        return cast(int | float, value)

    # -- layout --------------------------------------------------------------------------

    def _ensure_layout(self) -> None:
        """Create or migrate the layout, then check it holds this view as declared."""
        with self._transaction("read", write=False) as tx:
            meta = self._meta(tx)
            index_right = self._has_time_index(tx) == self.time_index
        if self._layout_needs_write(meta) or not index_right:
            with self._transaction("initialise", write=True) as tx:
                self._serialize_layout(tx)
                meta = self._meta(tx)
                if "schema_version" not in meta:
                    self._create(tx)
                elif int(meta["schema_version"]) < SCHEMA_VERSION:
                    self._migrate(tx, int(meta["schema_version"]))
                if self.namespace is not None and "namespace" not in self._meta(tx):
                    tx.run(
                        "INSERT INTO meta (key, value) VALUES ('namespace', %s)", (self.namespace,)
                    )
                self._ensure_time_index(tx)
                meta = self._meta(tx)
        self._check_meta(meta)

    def _layout_needs_write(self, meta: dict[str, str]) -> bool:
        if "schema_version" not in meta:
            return True
        return int(meta["schema_version"]) < SCHEMA_VERSION or (
            self.namespace is not None and "namespace" not in meta
        )

    def _meta(self, tx: Tx) -> dict[str, str]:
        if not self._has_table(tx, "meta"):
            return {}
        return {str(k): str(v) for k, v in tx.rows("SELECT key, value FROM meta")}

    def _create(self, tx: Tx) -> None:
        for statement in _ddl(self.types, self.layout):
            tx.run(statement)
        initial = {
            "schema_version": str(SCHEMA_VERSION),
            "totals_series": json.dumps(sorted(self.totals_series)),
            "aggregates": json.dumps(spec_of(self.aggregates)),
            "dlq_count": "0",
        }
        tx.many(
            "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
            list(initial.items()),
        )

    def _migrate(self, tx: Tx, version: int) -> None:
        """In place from v1/v2 (count only): the tables a layout lacks, one name for the
        skipped ranges' time, and the record that the store holds no aggregates."""
        for statement in _ddl(self.types, Layout(())):
            tx.run(statement)  # IF NOT EXISTS: v1 gains event_ids
        self._migrate_dialect(tx, version)
        tx.many(
            "INSERT INTO meta (key, value) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [
                ("schema_version", str(SCHEMA_VERSION)),
                ("aggregates", "[]"),
            ],
        )
        tx.run(
            "INSERT INTO meta (key, value) VALUES ('totals_series', %s) "
            "ON CONFLICT (key) DO NOTHING",
            (json.dumps(sorted(self.totals_series)),),
        )
        tx.run("INSERT INTO meta (key, value) VALUES ('dlq_count', '0') ON CONFLICT DO NOTHING")

    def _ensure_time_index(self, tx: Tx) -> None:
        """Create or drop the (series, bucket) index so that it exists exactly when wanted."""
        present = self._has_time_index(tx)
        if self.time_index and not present:
            tx.run("CREATE INDEX IF NOT EXISTS buckets_by_time ON buckets (series, bucket_ms)")
        elif present and not self.time_index:
            tx.run(f"DROP INDEX IF EXISTS {self._index_name('buckets_by_time')}")

    def _index_name(self, name: str) -> str:
        return name

    def _check_meta(self, meta: dict[str, str]) -> None:
        version = int(meta.get("schema_version", "0"))
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.where} has layout v{version}, newer than this logstream "
                f"(v{SCHEMA_VERSION}): upgrade logstream"
            )
        stored_ns = meta.get("namespace")
        if self.namespace is not None and stored_ns is not None and stored_ns != self.namespace:
            raise StoreError(
                f"{self.where} belongs to view {stored_ns!r}, not {self.namespace!r}: "
                "give each view its own store"
            )
        stored_totals = json.loads(meta.get("totals_series", "[]"))
        if frozenset(stored_totals) != self.totals_series:
            raise StoreError(
                f"{self.where} keeps totals for {stored_totals}, the view now asks for "
                f"{sorted(self.totals_series)}: bump the view version"
            )
        stored_aggs = json.loads(meta.get("aggregates", "[]"))
        if stored_aggs != spec_of(self.aggregates):
            view = (self.namespace or stored_ns or "VIEW").partition("@")[0]
            raise StoreError(
                f"{self.where} holds aggregates {stored_aggs}, the view declares "
                f"{spec_of(self.aggregates)}: recreate the store from the log with "
                f"`logstream rebuild {view}`"
            )

    def check_shape(self, shape: Mapping[str, Any]) -> None:
        """Refuse a view whose rows would mean something else than this store's.

        The store records the shape (bucket size, series, key field) of the view that first
        opened it; another shape would mix buckets or keys of two meanings."""
        wanted = json.dumps(shape, sort_keys=True)
        with self._transaction("read", write=False) as tx:
            stored = self._meta(tx).get("view_shape")
        if stored is None:  # a new store, or one from before shapes were recorded
            with self._transaction("record the view's shape", write=True) as tx:
                tx.run(
                    "INSERT INTO meta (key, value) VALUES ('view_shape', %s) "
                    "ON CONFLICT (key) DO NOTHING",
                    (wanted,),
                )
                stored = self._meta(tx).get("view_shape", wanted)
        if stored != wanted:
            view = (self.namespace or "VIEW").partition("@")[0]
            raise StoreError(
                f"{self.where} holds rows of a view shaped {stored}, the view declares "
                f"{wanted}: recreate the store from the log with `logstream rebuild {view}`"
            )

    # -- writes --------------------------------------------------------------------------

    def _rows(self, deltas: Mapping[SeriesKey, Counter]) -> list[tuple[Any, ...]]:
        """Deltas as bucket rows: all columns, aggregate states in stored form."""
        return self._build_rows(deltas.items())

    def _total_rows(
        self, deltas: Mapping[SeriesKey, Counter], rows: list[tuple[Any, ...]]
    ) -> list[tuple[Any, ...]]:
        """Bucket deltas (and their rows, in the same order) folded per (series, key) of a
        totals series."""
        totals = self.totals_series
        if not totals:
            return []
        if not self.aggregates:
            folded: dict[tuple[str, str], list[Any]] = {}
            for series, key, _b, count, first, last in rows:
                if series not in totals:
                    continue
                acc = folded.get((series, key))
                if acc is None:
                    folded[(series, key)] = [count, first, last]
                else:
                    acc[0] += count
                    if first < acc[1]:
                        acc[1] = first
                    if last > acc[2]:
                        acc[2] = last
            return [(s, k, *a) for (s, k), a in folded.items()]
        groups: dict[tuple[str, str], list[int]] = {}
        for i, row in enumerate(rows):
            if row[0] in totals:
                groups.setdefault((row[0], row[1]), []).append(i)
        out: list[tuple[Any, ...]] = []
        cells = list(deltas.values())
        merged: list[tuple[SeriesKey, Counter]] = []
        for (series, key), members in groups.items():
            if len(members) == 1:  # most keys: the bucket row is the totals delta
                out.append((series, key, *rows[members[0]][3:]))
            else:
                merged.append(((series, key, 0), self._merge_cells([cells[i] for i in members])))
        out += [(r[0], r[1], *r[3:]) for r in self._build_rows(merged)]
        return out

    def commit(self, flush: Flush) -> None:
        """Apply a flush atomically; StaleOffsetError (nothing applied) if fenced."""
        self._check_flush(flush)
        rows = self._rows(flush.deltas)
        totals = self._total_rows(flush.deltas, rows)
        with self._transaction("commit to", write=True) as tx:
            self._fence(tx, flush)
            if rows:
                self._merge(tx, "buckets", rows)
            if totals:
                self._merge(tx, "totals", totals)
            if flush.max_event_ms is not None:
                # Only a row that advances is touched, so the hot row is rarely locked.
                tx.run(
                    "INSERT INTO meta AS m (key, value) VALUES ('max_event_ms', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value "
                    "WHERE CAST(m.value AS BIGINT) < CAST(excluded.value AS BIGINT)",
                    (str(flush.max_event_ms),),
                )
            if flush.dlq_increment:
                tx.run(
                    "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + %s AS TEXT) "
                    "WHERE key = 'dlq_count'",
                    (flush.dlq_increment,),
                )
            if flush.event_ids_expire:
                tx.many(
                    "DELETE FROM event_ids WHERE topic = %s AND partition = %s AND to_offset <= %s",
                    list(flush.event_ids_expire),
                )
            if flush.event_ids:
                tx.many(
                    "INSERT INTO event_ids (topic, partition, from_offset, to_offset, payload) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (topic, partition, from_offset) "
                    "DO UPDATE SET to_offset = excluded.to_offset, payload = excluded.payload",
                    [
                        (r.topic, r.partition, r.from_offset, r.to_offset, r.payload)
                        for r in flush.event_ids
                    ],
                )

    def _fence(self, tx: Tx, flush: Flush) -> None:
        """Move each partition only from the offset the batch started at (sorted: lock order).

        The conditional UPDATE (or an INSERT that must not conflict) holds the row to commit,
        so a zombie consumer or a flush racing a reset gets StaleOffsetError."""
        for topic, partition, expected, new in sorted(flush.positions, key=lambda p: p[:2]):
            if expected is None:
                moved = tx.rows(_CLAIM_POSITION, (topic, partition, new))
            else:
                moved = tx.rows(_ADVANCE_POSITION, (new, new, new, topic, partition, expected))
            if not moved:
                found = tx.rows(
                    "SELECT next_offset FROM positions WHERE topic = %s AND partition = %s",
                    (topic, partition),
                )
                raise StaleOffsetError(
                    f"{topic}[{partition}] is at offset {found[0][0] if found else None}, the "
                    f"batch expected {expected}: another consumer or a reset moved it; re-seek"
                )

    def _upsert_sql(self, table: str) -> str:
        """The ON CONFLICT clause merging a row into `table` (alias t)."""
        keys = _KEYS[table]
        sets = [
            "count = t.count + excluded.count",
            f"first_ms = {self.least}(t.first_ms, excluded.first_ms)",
            f"last_ms = {self.greatest}(t.last_ms, excluded.last_ms)",
            *self.layout.merge_sets("t", self.least, self.greatest),
        ]
        return f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET " + ", ".join(sets)

    def columns_of(self, table: str) -> list[str]:
        return self._bucket_cols if table == "buckets" else self._total_cols

    def _merge(self, tx: Tx, table: str, rows: list[tuple[Any, ...]]) -> None:
        """Upsert rows; then union each distinct column's sketch with the stored one."""
        distinct = self.layout.distinct
        if not distinct:
            self._upsert(tx, table, rows, [])
            return
        keys = _KEYS[table]
        cols = self.columns_of(table)
        returned = self._upsert(tx, table, rows, keys + [c for _i, c, _k in distinct])
        nkeys = len(keys)
        index = {r[:nkeys]: r for r in rows}
        for j, (_i, column, lg_k) in enumerate(distinct):
            pos = cols.index(column)
            updates = []
            for got in returned:
                mine = index[got[:nkeys]][pos]
                stored = got[nkeys + j]
                if stored is None or mine is None or stored == mine:
                    continue  # a new row holds `mine` already; or nothing to add
                merged = union_bytes(bytes(stored), mine, lg_k)
                if merged != stored:
                    updates.append((*got[:nkeys], merged))
            if updates:
                self._write_back(tx, table, column, updates)

    def reset(self, reset: Reset) -> None:
        """Drop state from a time (or all of it) and replace positions, atomically."""
        self._check_reset(reset)
        now_ms = int(time.time() * 1000)
        with self._transaction("reset", write=True) as tx:
            self._lock_for_reset(tx)
            if reset.drop_from_ms is None:
                self._wipe(tx, ["buckets", "totals", "event_ids", "positions"])
                tx.run("DELETE FROM meta WHERE key = 'max_event_ms'")
            else:
                self._drop_from(tx, reset.drop_from_ms)
            positions = sorted(reset.positions, key=lambda p: (p.topic, p.partition))
            if positions:
                tx.many(
                    "DELETE FROM event_ids WHERE topic = %s AND partition = %s AND to_offset > %s",
                    [(p.topic, p.partition, p.next_offset) for p in positions],
                )
                tx.many(
                    _REPLACE_POSITION,
                    [
                        (p.topic, p.partition, p.next_offset, p.guard_offset, p.guard_min_ms)
                        for p in positions
                    ],
                )
            if reset.skipped:
                tx.many(
                    "INSERT INTO skipped (topic, partition, from_offset, to_offset, recorded_ms) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    [(*r, now_ms) for r in reset.skipped],
                )

    def _drop_from(self, tx: Tx, drop_from_ms: int) -> None:
        """Delete buckets >= drop_from_ms; recompute every kind of the totals they fed from
        the buckets that are left (sum/min/max and counts in SQL, latest by the newest
        remaining bucket's, distinct by a union in Python)."""
        self._temp_affected(
            tx,
            "SELECT DISTINCT b.series, b.key FROM buckets b "
            "JOIN totals t ON t.series = b.series AND t.key = b.key WHERE b.bucket_ms >= %s",
            (drop_from_ms,),
        )
        tx.run("DELETE FROM buckets WHERE bucket_ms >= %s", (drop_from_ms,))
        in_affected = (
            "EXISTS (SELECT 1 FROM logstream_affected a "
            "WHERE a.series = totals.series AND a.key = totals.key)"
        )
        tx.run(f"DELETE FROM totals WHERE {in_affected}")
        cols = ", ".join(self._total_cols)
        selects = ", ".join(
            [
                "b.series",
                "b.key",
                "sum(b.count)",
                "min(b.first_ms)",
                "max(b.last_ms)",
                *self.layout.recompute_selects(),
            ]
        )
        tx.run(
            f"INSERT INTO totals ({cols}) SELECT {selects} FROM buckets b "
            "JOIN logstream_affected a ON a.series = b.series AND a.key = b.key "
            "GROUP BY b.series, b.key"
        )
        for parts in self.layout.latest_columns():
            targets = ", ".join(parts)
            picks = ", ".join(f"b.{p}" for p in parts)
            order = ", ".join(f"b.{p} DESC" for p in parts)
            tx.run(
                f"UPDATE totals SET ({targets}) = (SELECT {picks} FROM buckets b "
                "WHERE b.series = totals.series AND b.key = totals.key "
                f"AND b.{parts[0]} IS NOT NULL ORDER BY {order} LIMIT 1) WHERE {in_affected}"
            )
        for _i, column, lg_k in self.layout.distinct:
            sketches: dict[tuple[str, str], list[bytes]] = {}
            for series, key, sketch in tx.rows(
                f"SELECT b.series, b.key, b.{column} FROM buckets b "
                "JOIN logstream_affected a ON a.series = b.series AND a.key = b.key "
                f"WHERE b.{column} IS NOT NULL ORDER BY b.series, b.key"
            ):
                sketches.setdefault((str(series), str(key)), []).append(bytes(sketch))
            if sketches:
                self._write_back(
                    tx,
                    "totals",
                    column,
                    [(s, k, union_all(v, lg_k)) for (s, k), v in sorted(sketches.items())],
                )

    # -- reads ---------------------------------------------------------------------------

    def positions(self) -> dict[tuple[str, int], Position]:
        """Every stored partition position."""
        with self._transaction("read", write=False) as tx:
            return self._positions(tx)

    @staticmethod
    def _positions(tx: Tx) -> dict[tuple[str, int], Position]:
        rows = tx.rows(
            "SELECT topic, partition, next_offset, guard_offset, guard_min_ms FROM positions "
            "ORDER BY topic, partition"
        )
        return {(r[0], r[1]): Position(r[0], r[1], r[2], r[3], r[4]) for r in rows}

    def event_id_ranges(self, topic: str, partition: int, since_offset: int) -> list[EventIdRange]:
        """Stored event-id ranges of a partition ending after `since_offset`, by offset."""
        with self._transaction("read", write=False) as tx:
            rows = tx.rows(
                "SELECT from_offset, to_offset, payload FROM event_ids "
                "WHERE topic = %s AND partition = %s AND to_offset > %s ORDER BY from_offset",
                (topic, partition, since_offset),
            )
        return [EventIdRange(topic, partition, r[0], r[1], bytes(r[2])) for r in rows]

    def total(self, series: str, key: str) -> Counter | None:
        """All-time counter of a key: the totals row, or a sum of its buckets."""
        with self._transaction("read", write=False) as tx:
            if series in self.totals_series:
                rows = tx.rows(
                    "SELECT count, first_ms, last_ms FROM totals WHERE series = %s AND key = %s",
                    (series, key),
                )
            else:
                rows = tx.rows(
                    "SELECT sum(count), min(first_ms), max(last_ms) FROM buckets "
                    "WHERE series = %s AND key = %s",
                    (series, key),
                )
        if not rows or rows[0][0] is None:
            return None
        row = rows[0]
        return Counter(int(row[0]), int(row[1]), int(row[2]))

    def top(
        self, series: str, limit: int, since_ms: int | None = None, until_ms: int | None = None
    ) -> list[tuple[str, int]]:
        """Keys by count desc, key asc: the totals index when unranged, else summed buckets."""
        return [(k, int(v)) for k, v in self.rank(series, "count", limit, since_ms, until_ms)]

    def rank(
        self,
        series: str,
        by: str,
        limit: int,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> list[tuple[str, int | float]]:
        """Keys by "count" or a sum/min/max/distinct aggregate, value desc then key asc."""
        column, kind, lg_k = self._ranked(by)
        if limit <= 0:
            return []
        unranged = since_ms is None and until_ms is None and series in self.totals_series
        if kind is Kind.DISTINCT:
            return self._rank_distinct(series, column, lg_k, limit, since_ms, until_ms, unranged)
        with self._transaction("read", write=False) as tx:
            if unranged:
                rows = tx.rows(
                    f"SELECT key, {column} FROM totals WHERE series = %s "
                    f"AND {column} IS NOT NULL ORDER BY {column} DESC, key ASC LIMIT %s",
                    (series, limit),
                )
            else:
                fn = "min" if kind is Kind.MIN else "max" if kind is Kind.MAX else "sum"
                rows = tx.rows(
                    f"SELECT key, {fn}({column}) AS v FROM buckets "
                    "WHERE series = %s AND bucket_ms >= %s AND bucket_ms < %s "
                    f"GROUP BY key HAVING {fn}({column}) IS NOT NULL "
                    "ORDER BY v DESC, key ASC LIMIT %s",
                    (series, _lo(since_ms), _hi(until_ms), limit),
                )
        return [(str(k), self._number(v)) for k, v in rows]

    def _ranked(self, by: str) -> tuple[str, Kind | None, int]:
        if by == "count":
            return "count", None, 0
        for i, agg in enumerate(self.aggregates):
            if agg.name == by:
                if agg.kind is Kind.LATEST:
                    raise ValueError(f"cannot rank by {by!r}: a latest value has no order")
                return f"a{i}", agg.kind, agg.lg_k
        names = ["count", *(a.name for a in self.aggregates if a.kind is not Kind.LATEST)]
        raise ValueError(f"cannot rank by {by!r}: use one of {names}")

    def _rank_distinct(
        self,
        series: str,
        column: str,
        lg_k: int,
        limit: int,
        since_ms: int | None,
        until_ms: int | None,
        unranged: bool,
    ) -> list[tuple[str, int | float]]:
        """Distinct counts are estimated per key in Python (sketches do not sort in SQL)."""
        with self._transaction("read", write=False) as tx:
            if unranged:
                rows = tx.rows(
                    f"SELECT key, {column} FROM totals WHERE series = %s AND {column} IS NOT NULL",
                    (series,),
                )
            else:
                rows = tx.rows(
                    f"SELECT key, {column} FROM buckets WHERE series = %s "
                    f"AND bucket_ms >= %s AND bucket_ms < %s AND {column} IS NOT NULL "
                    "ORDER BY key, bucket_ms",
                    (series, _lo(since_ms), _hi(until_ms)),
                )
        sketches: dict[str, list[bytes]] = {}
        for key, sketch in rows:
            sketches.setdefault(str(key), []).append(bytes(sketch))
        agg = Aggregate("x", Kind.DISTINCT, "x", lg_k)
        ranked = [(k, answer([agg], [union_all(s, lg_k)])["x"]) for k, s in sketches.items()]
        ranked.sort(key=lambda kv: (-kv[1], kv[0]))
        return cast(list[tuple[str, int | float]], ranked[:limit])

    def _summaries(self, rows: Iterable[Sequence[Any]]) -> Summary | None:
        """Rows (count, first_ms, last_ms, *aggregate columns) folded into one Summary."""
        count = 0
        first, last = MAX_I64, MIN_I64
        states = []
        for row in rows:
            count += int(row[0])
            first = min(first, int(row[1]))
            last = max(last, int(row[2]))
            if self.aggregates:
                states.append(self.layout.decode(row[3:], self._number))
        if count == 0:
            return None
        values = answer(self.aggregates, merge_all(self.aggregates, states)) if states else {}
        return Summary(count, first, last, values)

    def summary(
        self, series: str, key: str, since_ms: int | None = None, until_ms: int | None = None
    ) -> Summary | None:
        """Count, span and aggregates of one key over all time or [since, until)."""
        cols = ", ".join(["count", "first_ms", "last_ms", *self.layout.names])
        with self._transaction("read", write=False) as tx:
            if since_ms is None and until_ms is None and series in self.totals_series:
                rows = tx.rows(
                    f"SELECT {cols} FROM totals WHERE series = %s AND key = %s", (series, key)
                )
            else:
                rows = tx.rows(
                    f"SELECT {cols} FROM buckets WHERE series = %s AND key = %s "
                    "AND bucket_ms >= %s AND bucket_ms < %s ORDER BY bucket_ms",
                    (series, key, _lo(since_ms), _hi(until_ms)),
                )
        return self._summaries(rows)

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
        size = "CAST(%s AS BIGINT)"
        with self._transaction("read", write=False) as tx:
            rows = tx.rows(
                f"SELECT bucket_ms - ((bucket_ms %% {size}) + {size}) %% {size} AS ws, "
                "sum(count) FROM buckets WHERE series = %s AND key = %s "
                "AND bucket_ms >= CAST(%s AS BIGINT) AND bucket_ms < CAST(%s AS BIGINT) "
                "GROUP BY ws ORDER BY ws LIMIT %s",
                (size_ms, size_ms, size_ms, series, key, lo, hi, limit),
            )
        return [(int(ws), int(c)) for ws, c in rows]

    def window_summaries(
        self,
        series: str,
        key: str,
        size_ms: int,
        since_ms: int,
        until_ms: int,
        limit: int,
        after_start_ms: int | None = None,
    ) -> list[tuple[int, Summary]]:
        """Like `windows`, with each window's whole summary (folded in Python).

        The rows read are bounded by the limit: the first `limit` non-empty windows are found
        in SQL (GROUP BY ... LIMIT), then only their buckets are read."""
        lo, hi = window_bounds(size_ms, since_ms, until_ms, after_start_ms)
        if limit <= 0 or lo >= hi:
            return []
        cols = ", ".join(["bucket_ms", "count", "first_ms", "last_ms", *self.layout.names])
        size = "CAST(%s AS BIGINT)"
        with self._transaction("read", write=False) as tx:
            last = tx.rows(
                f"SELECT max(ws) FROM (SELECT bucket_ms - ((bucket_ms %% {size}) + {size}) "
                f"%% {size} AS ws FROM buckets WHERE series = %s AND key = %s "
                "AND bucket_ms >= CAST(%s AS BIGINT) AND bucket_ms < CAST(%s AS BIGINT) "
                "GROUP BY ws ORDER BY ws LIMIT %s) AS w",
                (size_ms, size_ms, size_ms, series, key, lo, hi, limit),
            )[0][0]
            if last is None:
                return []
            rows = tx.rows(
                f"SELECT {cols} FROM buckets WHERE series = %s AND key = %s "
                "AND bucket_ms >= %s AND bucket_ms < %s ORDER BY bucket_ms",
                (series, key, lo, min(hi, int(last) + size_ms)),
            )
        grouped: dict[int, list[Sequence[Any]]] = {}
        for row in rows:
            start = int(row[0]) - int(row[0]) % size_ms
            grouped.setdefault(start, []).append(row[1:])
        out: list[tuple[int, Summary]] = []
        for start, group in grouped.items():
            summary = self._summaries(group)
            if summary is not None:
                out.append((start, summary))
        return out

    def bucket_rows(self, series: str | None = None) -> list[BucketRow]:
        """Every bucket row sorted by (series, key, bucket_ms); aggregate columns follow."""
        return cast(list[BucketRow], self._table_rows("buckets", series))

    def totals_rows(self, series: str | None = None) -> list[TotalRow]:
        """Every totals row sorted by (series, key); aggregate columns follow."""
        return cast(list[TotalRow], self._table_rows("totals", series))

    def _table_rows(self, table: str, series: str | None) -> list[tuple[Any, ...]]:
        cols = self.columns_of(table)
        order = ", ".join(_KEYS[table])
        with self._transaction("read", write=False) as tx:
            if series is None:
                rows = tx.rows(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {order}")
            else:
                rows = tx.rows(
                    f"SELECT {', '.join(cols)} FROM {table} WHERE series = %s ORDER BY {order}",
                    (series,),
                )
        base = len(_KEYS[table]) + 3
        return [
            (*r[:base], *self.layout.encode(self.layout.decode(r[base:], self._number)))
            for r in rows
        ]

    def stats(self) -> StoreStats:
        """Positions, max event time, DLQ count and skipped ranges from one snapshot."""
        with self._snapshot() as tx:
            positions = self._positions(tx)
            meta = dict(tx.rows("SELECT key, value FROM meta"))
            skipped: list[SkippedRange] = [
                (str(t), int(p), int(f), int(u))
                for t, p, f, u in tx.rows(
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

    def _snapshot(self) -> AbstractContextManager[Tx]:
        """A read transaction seeing one consistent snapshot across statements."""
        return self._transaction("read", write=False)


def _lo(since_ms: int | None) -> int:
    return MIN_I64 if since_ms is None else since_ms


def _hi(until_ms: int | None) -> int:
    return MAX_I64 if until_ms is None else until_ms
