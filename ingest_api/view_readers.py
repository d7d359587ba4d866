"""Read access to the view stores for the query API, opened lazily, one per view."""

from __future__ import annotations

import threading

from logstream.freshness import EndOffsets
from logstream.settings import Settings
from logstream.stores.base import ViewStore
from logstream.stores.factory import open_store
from logstream.view import View

__all__ = ["ViewReaders"]


class ViewReaders:
    """Store handles and log-end offsets shared by every request of one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.end_offsets = EndOffsets(settings)
        self._stores: dict[str, ViewStore] = {}
        self._lock = threading.Lock()

    def store(self, view: View) -> ViewStore:
        namespace = view.namespace()
        with self._lock:
            store = self._stores.get(namespace)
            if store is None:
                store = open_store(
                    self.settings.store_url, self.settings.data_dir, namespace, view.totals_series
                )
                self._stores[namespace] = store
            return store

    def close(self) -> None:
        with self._lock:
            for store in self._stores.values():
                store.close()
            self._stores.clear()
        self.end_offsets.close()
