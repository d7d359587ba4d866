"""The stack under test as real processes: `logstream ingest` and `logstream consume VIEW`.

Each runs in its own session (so a SIGKILL takes its children too), logs to a file, and is
watched for exits the suite did not cause: a consumer that dies on its own is a finding,
recorded with its exit code and the last lines of its log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from logstream.stores.factory import sqlite_path


@dataclass
class Service:
    """One long-running CLI process that the suite may kill and restart."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_dir: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    unexpected_exits: list[str] = field(default_factory=list)

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def start(self) -> None:
        assert not self.alive(), f"{self.name} already runs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(f"--- start #{self.starts + 1} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "logstream", *self.argv],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.starts += 1

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_alive(self) -> bool:
        """False (and the exit recorded as a finding, once) if it exited on its own."""
        if self.process is None or self.alive():
            return self.process is not None
        code = self.process.returncode
        self.unexpected_exits.append(f"{self.name} exited with {code}: {self.log_tail()}")
        self.process = None
        return False

    def sigkill(self) -> float:
        """SIGKILL the process group; returns the kill time once it is gone."""
        assert self.process is not None and self.alive(), f"{self.name} is not running"
        killed_at = time.monotonic()
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None
        return killed_at

    def sigterm(self, timeout_s: float) -> float | None:
        """SIGTERM, wait up to `timeout_s`: the time it took to exit, or None if it hung (its
        stacks are then dumped to its log and it is killed, so nothing is left behind)."""
        if self.process is None:
            return None
        started = time.monotonic()
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.abort_with_stacks()
            return None
        self.process = None
        return time.monotonic() - started

    def kill_quietly(self) -> None:
        """Cleanup: SIGKILL whatever still runs."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None

    def abort_with_stacks(self) -> None:
        """For a hung process: SIGABRT, so that Python's faulthandler (PYTHONFAULTHANDLER is
        set in the suite's environment) writes every thread's stack to the log, then make
        sure it is gone."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        self.kill_quietly()

    def log_tail(self, lines: int = 3) -> str:
        """The last lines of the log that logstream wrote (librdkafka's own '%' lines are
        connection noise during faults)."""
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        ours = [line.strip()[:240] for line in text if not line.startswith("%")]
        return " | ".join(ours[-lines:])


def wait_ingest_ready(base_url: str, service: Service, timeout_s: float) -> float:
    """Poll `/readyz` until 200 (the broker answers, topics exist); returns the wait."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        assert service.check_alive(), f"ingest exited: {service.unexpected_exits}"
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"ingest not ready within {timeout_s:.0f}s: {service.log_tail()}")


class StorePositions:
    """A view's stored offsets (`positions` table), read from its SQLite file without the
    store's code: read-only, so the consumer's writes and a full disk are not disturbed."""

    def __init__(self, data_dir: Path, namespace: str) -> None:
        self.path = sqlite_path(None, data_dir, namespace)

    def read(self, topic: str) -> dict[int, int]:
        """partition -> next offset to apply ({} before the first commit)."""
        if not self.path.exists():
            return {}
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        try:
            rows = db.execute(
                "SELECT partition, next_offset FROM positions WHERE topic = ?", (topic,)
            ).fetchall()
        except sqlite3.OperationalError:  # tables not created yet
            return {}
        finally:
            db.close()
        return {int(p): int(o) for p, o in rows}

    def applied(self, topic: str, partition: int, offset: int) -> bool:
        """The view has applied (or passed) the event at `offset`."""
        return self.read(topic).get(partition, 0) > offset


class PositionsWatcher:
    """Samples every view's stored offsets every `interval_s` on a thread and keeps each
    change with its time, so that "when did view V apply offset o of partition p" has an
    answer to within one interval, whenever the suite gets round to asking (it may be busy
    restarting a node at that moment)."""

    def __init__(self, stores: dict[str, StorePositions], topic: str, interval_s: float = 0.1):
        self.stores, self.topic, self.interval_s = stores, topic, interval_s
        self.changes: dict[str, list[tuple[float, dict[int, int]]]] = {n: [] for n in stores}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="positions", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            now = time.monotonic()
            for name, store in self.stores.items():
                try:
                    positions = store.read(self.topic)
                except sqlite3.Error:  # busy or mid-creation: the next sample will do
                    continue
                history = self.changes[name]
                if not history or history[-1][1] != positions:
                    history.append((now, positions))

    def applied_at(self, name: str, partition: int, offset: int) -> float | None:
        """When the view's store first showed the event at `offset` applied (None: not yet).
        Stored offsets only grow (no backfill runs here), so the first change past it is it."""
        for at, positions in self.changes[name]:
            if positions.get(partition, 0) > offset:
                return at
        return None

    def last_change(self, name: str) -> float:
        history = self.changes[name]
        return history[-1][0] if history else 0.0
