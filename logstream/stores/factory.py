"""Pick a view store from `LOGSTREAM_STORE_URL`: a file per view by default, or PostgreSQL.

URL forms:
* None: SQLite file `<data_dir>/views/<safe namespace>.sqlite`.
* `sqlite:///relative/dir/` or `sqlite:////absolute/dir/` (trailing slash or an existing
  directory): one file per view in that directory.
* `sqlite:///some/file.sqlite`: that one file (the file remembers its view, so a second view
  pointed at it fails loudly instead of mixing counters).
* `postgresql://...` or `postgres://...`: one schema per view in that database.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from logstream.errors import StoreError
from logstream.stores.base import ViewStore, safe_name

if TYPE_CHECKING:
    from logstream.aggregates import Aggregate
    from logstream.view import View

__all__ = ["drop_store", "open_store", "open_view_store", "sqlite_path"]

_PG_SCHEMES = ("postgresql://", "postgres://")
_SQLITE_PREFIX = "sqlite:///"


def sqlite_path(store_url: str | None, data_dir: Path, namespace: str) -> Path:
    """The SQLite file of a namespace under a None or `sqlite:///` store URL."""
    filename = f"{safe_name(namespace)}.sqlite"
    if store_url is None:
        return Path(data_dir) / "views" / filename
    if not store_url.startswith(_SQLITE_PREFIX):
        raise StoreError(f"not a sqlite store URL (scheme {_scheme(store_url)!r})")
    raw = store_url[len(_SQLITE_PREFIX) :]
    if not raw:
        raise StoreError("sqlite store URL has no path: use sqlite:///dir/ or sqlite:///file")
    path = Path(raw)
    if raw.endswith("/") or path.is_dir():
        return path / filename
    return path


def open_view_store(
    store_url: str | None, data_dir: Path, view: View, namespace: str | None = None
) -> ViewStore:
    """The store of `view` (or of its side-by-side `namespace`), laid out as the view asks;
    a store written by a view of another shape (bucket_ms, series, key field) is refused."""
    store = open_store(
        store_url,
        data_dir,
        namespace or view.namespace(),
        view.totals_series,
        time_index=view.time_index,
        aggregates=tuple(getattr(view, "aggregates", ())),
    )
    check_shape = getattr(store, "check_shape", None)
    if check_shape is not None:
        shape = {
            "bucket_ms": view.bucket_ms,
            "series": sorted(view.series),
            "key_field": getattr(view, "_key_field", None),
        }
        try:
            check_shape(shape)
        except BaseException:
            store.close()
            raise
    return store


def open_store(
    store_url: str | None,
    data_dir: Path,
    namespace: str,
    totals_series: Iterable[str],
    *,
    time_index: bool = True,
    aggregates: Sequence[Aggregate] = (),
) -> ViewStore:
    """Open (creating if needed) the store of one view namespace, e.g. `likes-by-url@v2`.

    `time_index`: keep the (series, bucket) index that ranged rankings use (`View.time_index`);
    an existing store gains or loses it on open. `aggregates`: what each bucket keeps besides
    its count (`View.aggregates`); a store holding other ones is refused (rebuild it).
    """
    totals = frozenset(totals_series)
    if store_url is None or store_url.startswith(_SQLITE_PREFIX):
        from logstream.stores.sqlite import SQLiteViewStore

        return SQLiteViewStore(
            sqlite_path(store_url, data_dir, namespace),
            totals,
            namespace=namespace,
            time_index=time_index,
            aggregates=aggregates,
        )
    if store_url.startswith(_PG_SCHEMES):
        from logstream.stores.postgres import PostgresViewStore

        return PostgresViewStore(
            store_url, namespace, totals, time_index=time_index, aggregates=aggregates
        )
    raise StoreError(
        f"unsupported store URL scheme {_scheme(store_url)!r}: use sqlite:///path, "
        "postgresql://... or leave LOGSTREAM_STORE_URL unset"
    )


def drop_store(store_url: str | None, data_dir: Path, namespace: str) -> bool:
    """Delete all state of a namespace (file or schema); True if there was something to drop.

    Refuses (StoreError) when the file or schema belongs to another view.
    """
    if store_url is not None and store_url.startswith(_PG_SCHEMES):
        from logstream.stores.postgres import drop_schema

        return drop_schema(store_url, namespace)
    if store_url is not None and not store_url.startswith(_SQLITE_PREFIX):
        raise StoreError(f"unsupported store URL scheme {_scheme(store_url)!r}")
    path = sqlite_path(store_url, data_dir, namespace)
    if not path.exists():
        return False
    owner = _sqlite_owner(path)
    if owner is not None and owner != namespace:
        raise StoreError(f"{path} belongs to view {owner!r}, not {namespace!r}; not deleting it")
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return True


def _sqlite_owner(path: Path) -> str | None:
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'namespace'").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise StoreError(f"{path} is not a readable logstream view store: {exc}") from exc
    return None if row is None else str(row[0])


def _scheme(url: str) -> str:
    """Only the scheme of a URL, so an error message never shows a password."""
    head, sep, _ = url.partition("://")
    return head if sep else "(none)"
