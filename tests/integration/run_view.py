"""Subprocess entry for crash and rebalance tests: build one view from LOGSTREAM_TEST_TOPIC.

argv: VIEW GROUP [--forever]; the store namespace is LOGSTREAM_TEST_NAMESPACE (default: the
view's). Prints the run result as JSON on stdout.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import asdict

from consumers import get_view
from logstream.codec import Codec
from logstream.runtime import ViewRunner
from logstream.schemas import SchemaCatalogue
from logstream.settings import load_settings
from logstream.stores.factory import open_view_store

if __name__ == "__main__":
    view_name, group = sys.argv[1], sys.argv[2]
    forever = "--forever" in sys.argv
    settings = load_settings()
    view = get_view(view_name)
    namespace = os.environ.get("LOGSTREAM_TEST_NAMESPACE", view.namespace())
    store = open_view_store(settings.store_url, settings.data_dir, view, namespace)
    codec = Codec(SchemaCatalogue.load(settings.resolved_schema_dir))
    runner = ViewRunner(
        settings,
        view,
        store,
        codec,
        group_id=group,
        until_caught_up=not forever,
        topics=(os.environ["LOGSTREAM_TEST_TOPIC"],),
    )
    signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    result = runner.run()
    store.close()
    print(json.dumps({k: v for k, v in asdict(result).items() if k != "targets"}), flush=True)
    sys.exit(0 if (forever or result.caught_up) else 1)
