"""A view store remembers the shape of the view that wrote it (bucket size, series, key
field): opening it for a view of another shape is refused, naming `logstream rebuild`, so
buckets or keys of two meanings never mix. The same shape reopens it as before."""

from __future__ import annotations

import os
import uuid

import pytest

from logstream.errors import StoreError
from logstream.stores.base import Counter, Flush
from logstream.stores.factory import drop_store, open_view_store
from logstream.view import HOUR_MS, MINUTE_MS, View

PG_DSN = os.environ.get("LOGSTREAM_TEST_PG_DSN")
NAME = f"page-views-{uuid.uuid4().hex[:8]}"


@pytest.fixture(
    params=[
        None,
        pytest.param(
            "postgres",
            marks=pytest.mark.skipif(
                not PG_DSN, reason="set LOGSTREAM_TEST_PG_DSN (start one with .ci/postgres.sh)"
            ),
        ),
    ]
)
def store_url(request, tmp_path):
    url = PG_DSN if request.param else None
    yield url
    for namespace in (NAME, f"{NAME}@v2"):
        drop_store(url, tmp_path, namespace)


def _view(**changes) -> View:
    args = {"name": NAME, "topics": ("t",), "bucket_ms": HOUR_MS, "key": "url"}
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
def test_another_shape_is_refused_naming_rebuild(store_url, tmp_path, changed):
    with open_view_store(store_url, tmp_path, _view()) as store:
        store.commit(Flush({("url", "a", 0): Counter(1, 5, 5)}, [("t", 0, None, 1)], 5))
    with pytest.raises(StoreError) as caught:
        open_view_store(store_url, tmp_path, _view(**changed))
    assert f"logstream rebuild {NAME}" in str(caught.value)
    # The declared shape still opens it, with its rows; a rebuild's own store is fresh.
    with open_view_store(store_url, tmp_path, _view()) as store:
        assert [tuple(r[:6]) for r in store.bucket_rows()] == [("url", "a", 0, 1, 5, 5)]
    with open_view_store(store_url, tmp_path, _view(**changed), f"{NAME}@v2") as store:
        assert store.bucket_rows() == []
