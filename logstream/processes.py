"""Process-group helpers shared by the local broker and the background services.

Everything logstream starts in the background runs in its own session, so stopping it means
signalling the whole group: no child (a JVM, a uvicorn worker) is left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

__all__ = ["pid_alive", "signal_group", "terminate"]


def pid_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours still answers kill(0): reap it
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return _not_zombie(pid)
    return waited == 0


def _not_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group led by `pid` (falling back to the process alone)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def terminate(pids: Iterable[int], timeout_s: float) -> list[int]:
    """SIGTERM each live group, SIGKILL what still runs after `timeout_s`; wait until all are
    gone. Returns the pids that were running."""
    live = [pid for pid in pids if pid_alive(pid)]
    for pid in live:
        signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any(pid_alive(pid) for pid in live) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in live:
        if pid_alive(pid):
            signal_group(pid, signal.SIGKILL)
    while any(pid_alive(pid) for pid in live):
        time.sleep(0.05)
    return live
