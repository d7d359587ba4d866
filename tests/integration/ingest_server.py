"""`logstream ingest` as a child process on a free port, for tests that need the real server
(its HTTP limits, its settings file, its own process) rather than an in-process app."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.conftest import free_port_block

__all__ = ["running_ingest"]


@contextmanager
def running_ingest(
    env: dict[str, str], *, cwd: Path | None = None, ready_path: str = "/healthz"
) -> Iterator[str]:
    """The server's base URL once `ready_path` answers 200 (within 60 s); stopped on exit."""
    port = free_port_block(1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "logstream", "ingest", "--port", str(port)],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}{ready_path}", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "ingest did not start"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
