"""Which version of each view answers queries: the pointer `promote` moves atomically.

A view's first version is its plain name (`likes-by-url`); a rebuild creates `v2`, `v3`, …
with its own consumer group and store namespace (`likes-by-url@v2`). The pointer lives
beside the stores: a JSON file under `<data_dir>/views/` for SQLite (replaced atomically
with rename), a table `logstream_view_versions` for PostgreSQL.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from logstream.errors import StoreError
from logstream.settings import Settings

__all__ = ["BASE_VERSION", "VersionRegistry"]

BASE_VERSION = "v1"  # the view's plain namespace


class VersionRegistry:
    """Per view: the versions that exist and the one that is current."""

    def __init__(self, settings: Settings) -> None:
        self._url = settings.store_url
        self._file = settings.data_dir / "views" / "versions.json"

    # ----- public ---------------------------------------------------------------------------
    def current(self, view: str) -> str:
        return str(self._read().get(view, {}).get("current", BASE_VERSION))

    def versions(self, view: str) -> list[str]:
        entry = self._read().get(view, {})
        return list(entry.get("versions", [BASE_VERSION]))

    def create_next(self, view: str) -> str:
        """Register and return the next version id (v2, v3, ...)."""
        with self._locked():
            return self._create_next(view)

    def _create_next(self, view: str) -> str:
        state = self._read()
        entry = state.setdefault(view, {"current": BASE_VERSION, "versions": [BASE_VERSION]})
        numbers = [int(v[1:]) for v in entry["versions"]]
        version = f"v{max(numbers) + 1}"
        entry["versions"].append(version)
        self._write(state)
        return version

    def start_building(self, view: str) -> str:
        """Register the next version as a rebuild in progress (see `unfinished`)."""
        with self._locked():
            version = self._create_next(view)
            state = self._read()
            state[view].setdefault("building", []).append(version)
            self._write(state)
            return version

    def finish_building(self, view: str, version: str) -> None:
        """The rebuild of `version` caught up: it is no longer unfinished."""
        with self._locked():
            state = self._read()
            building = state.get(view, {}).get("building", [])
            if version in building:
                building.remove(version)
                self._write(state)

    def unfinished(self, view: str) -> list[str]:
        """Versions whose rebuild started and never caught up (a crash, a view-code error),
        oldest first; a promoted or dropped version is not among them."""
        entry = self._read().get(view, {})
        current = entry.get("current", BASE_VERSION)
        versions = entry.get("versions", [BASE_VERSION])
        return [v for v in entry.get("building", []) if v != current and v in versions]

    def set_current(self, view: str, version: str) -> None:
        with self._locked():
            self._set_current(view, version)

    def _set_current(self, view: str, version: str) -> None:
        state = self._read()
        entry = state.setdefault(view, {"current": BASE_VERSION, "versions": [BASE_VERSION]})
        if version not in entry["versions"]:
            raise StoreError(f"{view} has no version {version}: {', '.join(entry['versions'])}")
        entry["current"] = version
        self._write(state)

    def forget(self, view: str, version: str) -> None:
        with self._locked():
            self._forget(view, version)

    def _forget(self, view: str, version: str) -> None:
        state = self._read()
        entry = state.get(view)
        if entry is None or version not in entry["versions"]:
            raise StoreError(f"{view} has no version {version}")
        if entry["current"] == version:
            raise StoreError(f"{view} {version} is current: promote another version first")
        entry["versions"].remove(version)
        if version in entry.get("building", []):
            entry["building"].remove(version)
        self._write(state)

    @staticmethod
    def namespace(view: str, version: str) -> str:
        return view if version == BASE_VERSION else f"{view}@{version}"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise read-modify-write cycles of local processes (rebuild vs promote)."""
        self._file.parent.mkdir(parents=True, exist_ok=True)
        with (self._file.parent / ".versions.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # ----- storage --------------------------------------------------------------------------
    def _is_postgres(self) -> bool:
        return self._url is not None and self._url.startswith(("postgresql://", "postgres://"))

    def _read(self) -> dict[str, Any]:
        if self._is_postgres():
            return self._pg_read()
        try:
            return dict(json.loads(self._file.read_text()))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read {self._file}: {exc}") from exc

    def _write(self, state: dict[str, Any]) -> None:
        if self._is_postgres():
            self._pg_write(state)
            return
        self._file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._file.parent, prefix=".versions-")
        with os.fdopen(fd, "w") as handle:
            json.dump(state, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self._file)  # atomic: a reader sees the old or the new pointer

    def _pg_read(self) -> dict[str, Any]:
        import psycopg

        from logstream.stores.postgres import pg_store_error

        assert self._url is not None
        try:
            with psycopg.connect(self._url, autocommit=True) as conn:
                self._pg_ensure(conn)
                rows = conn.execute("SELECT view, state FROM logstream_view_versions").fetchall()
        except psycopg.Error as exc:
            raise pg_store_error(self._url, "cannot read the view versions", exc) from exc
        return {view: json.loads(state) for view, state in rows}

    def _pg_write(self, state: dict[str, Any]) -> None:
        import psycopg

        from logstream.stores.postgres import pg_store_error

        assert self._url is not None
        try:
            with psycopg.connect(self._url) as conn, conn.transaction():
                self._pg_ensure(conn)
                for view, entry in state.items():
                    conn.execute(
                        "INSERT INTO logstream_view_versions (view, state) VALUES (%s, %s) "
                        "ON CONFLICT (view) DO UPDATE SET state = excluded.state",
                        (view, json.dumps(entry)),
                    )
        except psycopg.Error as exc:
            raise pg_store_error(self._url, "cannot write the view versions", exc) from exc

    @staticmethod
    def _pg_ensure(conn: Any) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS logstream_view_versions "
            "(view text PRIMARY KEY, state text NOT NULL)"
        )
