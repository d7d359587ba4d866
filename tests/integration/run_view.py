"""Subprocess entry for crash tests: build one view on LOGSTREAM_TEST_TOPIC until caught up."""

from __future__ import annotations

import os
import sys

from consumers import get_view
from logstream.codec import Codec
from logstream.runtime import ViewRunner
from logstream.schemas import SchemaCatalogue
from logstream.settings import load_settings
from logstream.stores.factory import open_store

if __name__ == "__main__":
    view_name, group = sys.argv[1], sys.argv[2]
    settings = load_settings()
    view = get_view(view_name)
    store = open_store(settings.store_url, settings.data_dir, view.namespace(), view.totals_series)
    codec = Codec(SchemaCatalogue.load(settings.resolved_schema_dir))
    result = ViewRunner(
        settings,
        view,
        store,
        codec,
        group_id=group,
        until_caught_up=True,
        topics=(os.environ["LOGSTREAM_TEST_TOPIC"],),
    ).run()
    sys.exit(0 if result.caught_up else 1)
