"""The consumer's last line of defence: when no progress is possible, say why and exit.

Every wait in the consume path has a bound, so a healthy consumer always comes back to its
loop: a broker outage is ridden out (consume calls return empty, librdkafka reconnects) and
a full store is waited out (the commit thread retries; the loop holds reading and keeps
polling). What is left are waits no bound of ours reaches: a librdkafka call that never
returns, a store call stuck in a driver, a shutdown that does not finish. A consumer in that
state holds its partitions and shows no error, which is worse than exiting: a supervisor
(systemd, Kubernetes, `logstream stack`) restarts an exited consumer, and the store's
offsets make the restart exact.

So the watchdog watches *liveness*, not the broker: it fires when a watched age (seconds
since the consume loop last made a round, seconds the current store attempt has been
running, seconds since a stop was requested) passes its limit.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Watch", "Watchdog", "exit_process"]

log = logging.getLogger("logstream.runtime")

EXIT_STALLED = 1


def exit_process(reason: str) -> None:
    """Log `reason` and end the process at once: a stuck thread cannot be unwound, and the
    view store is crash-safe (a commit is one transaction), so nothing needs cleaning up."""
    log.critical("%s", reason)
    try:
        sys.stderr.write(f"error: {reason}\n")
        sys.stderr.flush()
        sys.stdout.flush()
    finally:
        os._exit(EXIT_STALLED)


@dataclass(frozen=True)
class Watch:
    """`age()` in seconds (None: nothing to watch right now) must stay within `limit_s`."""

    what: str
    age: Callable[[], float | None]
    limit_s: float


class Watchdog:
    """A daemon thread that calls `on_stall(reason)` once, when a watch passes its limit."""

    def __init__(
        self,
        label: str,
        watches: list[Watch],
        on_stall: Callable[[str], None] = exit_process,
        *,
        check_every_s: float = 0.5,
    ) -> None:
        self._label = label
        self._watches = watches
        self._on_stall = on_stall
        self._check_every_s = check_every_s
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"watchdog-{self._label}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (does not wait for the thread: it notices within one check)."""
        self._stopped.set()

    def check(self) -> str | None:
        """The first watch past its limit, as a sentence; None when all are within."""
        for watch in self._watches:
            age = watch.age()
            if age is not None and age > watch.limit_s:
                return (
                    f"{self._label}: no progress possible: {watch.what} for {age:.0f} s "
                    f"(limit {watch.limit_s:g} s); exiting so that a supervisor restarts it "
                    "(the view store's offsets make the restart exact)"
                )
        return None

    def _run(self) -> None:
        while not self._stopped.wait(self._check_every_s):
            reason = self.check()
            if reason is not None:
                self._stopped.set()
                self._on_stall(reason)
                return
