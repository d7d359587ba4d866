"""A view store remembers the shape of the view that wrote it (bucket size, series, key
field): opening it for a view of another shape is refused, naming `logstream rebuild`, so
buckets or keys of two meanings never mix. The same shape reopens it as before."""

from __future__ import annotations

import pytest

from logstream.errors import StoreError
from logstream.stores.base import Counter, Flush
from logstream.stores.factory import open_view_store
from logstream.view import HOUR_MS, MINUTE_MS, View


def _view(**changes) -> View:
    args = {"name": "page-views", "topics": ("t",), "bucket_ms": HOUR_MS, "key": "url"}
    return View(**{**args, **changes})


def _pairs(event):
    return [("url", event["url"])]


@pytest.mark.parametrize(
    "changed",
    [
        {"bucket_ms": MINUTE_MS},
        {"key": "user_id"},
        {"key": _pairs, "series": ("url", "site")},
        {"key": _pairs, "series": ("page",)},
    ],
)
def test_another_shape_is_refused_naming_rebuild(tmp_path, changed):
    with open_view_store(None, tmp_path, _view()) as store:
        store.commit(Flush({("url", "a", 0): Counter(1, 5, 5)}, [("t", 0, None, 1)], 5))
    with pytest.raises(StoreError) as caught:
        open_view_store(None, tmp_path, _view(**changed))
    assert "logstream rebuild page-views" in str(caught.value)
    # The declared shape still opens it, with its rows; a rebuild's own store is fresh.
    with open_view_store(None, tmp_path, _view()) as store:
        assert store.bucket_rows() == [("url", "a", 0, 1, 5, 5)]
    with open_view_store(None, tmp_path, _view(**changed), "page-views@v2") as store:
        assert store.bucket_rows() == []
