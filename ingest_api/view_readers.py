"""Read access to the view stores for the query API, opened lazily, one per view version.

Each request resolves which version of a view is current once (the pointer `logstream
promote` moves) and reads that version's store for the whole request, so a promotion
switches answers atomically between two requests, never inside one.
"""

from __future__ import annotations

import threading
import time

from ingest_api.read_waits import ReadWaits
from logstream.freshness import EndOffsets
from logstream.settings import Settings
from logstream.stores.base import ViewStore
from logstream.stores.factory import open_view_store
from logstream.versions import VersionRegistry
from logstream.view import View

__all__ = ["ViewReaders"]

POINTER_TTL_S = 0.5


class ViewReaders:
    """Store handles and log-end offsets shared by every request of one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.end_offsets = EndOffsets(settings)
        self.waits = ReadWaits(settings.read_waiters_max)
        self.versions = VersionRegistry(settings)
        self._stores: dict[str, ViewStore] = {}
        self._current: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def current_version(self, view: View) -> str:
        cached = self._current.get(view.name)
        if cached is not None and time.monotonic() - cached[0] < POINTER_TTL_S:
            return cached[1]
        version = self.versions.current(view.name)
        self._current[view.name] = (time.monotonic(), version)
        return version

    def store(self, view: View) -> ViewStore:
        """The store of the view's current version."""
        return self.resolve(view)[0]

    def resolve(self, view: View) -> tuple[ViewStore, str]:
        """The current version of the view and its store, resolved together."""
        version = self.current_version(view)
        return self.store_of(view, version), version

    def store_of(self, view: View, version: str) -> ViewStore:
        """The store of one version of the view (current or not: metrics read them all)."""
        namespace = VersionRegistry.namespace(view.name, version)
        with self._lock:
            store = self._stores.get(namespace)
            if store is None:
                store = open_view_store(
                    self.settings.store_url, self.settings.data_dir, view, namespace
                )
                self._stores[namespace] = store
            return store

    def close(self) -> None:
        with self._lock:
            for store in self._stores.values():
                store.close()
            self._stores.clear()
        self.end_offsets.close()
