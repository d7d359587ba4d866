"""Run a blocking call that has no timeout of its own, but wait for it only so long.

librdkafka's `Consumer.close()` waits for outstanding offset commits and for leaving the
group; with the broker gone that can take the whole session timeout or longer. A consumer
that was asked to stop must not wait for that: the store already holds every offset.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["call_bounded"]

log = logging.getLogger("logstream.runtime")


def call_bounded(fn: Callable[[], object], timeout_s: float, what: str) -> bool:
    """Call `fn` on a daemon thread; True if it returned within `timeout_s`.

    If it did not, it is left running (a daemon thread does not keep the process alive) and
    a warning says so. An exception from `fn` is logged, not raised: this is for cleanup.
    """
    finished = threading.Event()

    def run() -> None:
        try:
            fn()
        except Exception as exc:
            log.warning("%s failed: %s", what, exc)
        finally:
            finished.set()

    threading.Thread(target=run, name=f"bounded-{what}", daemon=True).start()
    if finished.wait(timeout_s):
        return True
    log.warning("%s did not finish within %g s; not waiting for it", what, timeout_s)
    return False
