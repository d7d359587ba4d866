"""`logstream stack up` (what `make up` runs) brings up everything; `down` leaves nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port_block


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _pids_under(data_dir: Path) -> list[int]:
    """Every live process whose command line mentions our private data dir or ports."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if (str(data_dir).encode() in environ or str(data_dir).encode() in cmdline) and _running(
            int(entry.name)
        ):
            pids.append(int(entry.name))
    return [p for p in pids if p != os.getpid()]


@pytest.mark.slow
def test_stack_up_then_down_leaves_no_process(tmp_path: Path):
    ports = free_port_block(3)
    env = {
        **os.environ,
        "LOGSTREAM_DATA_DIR": str(tmp_path),
        "LOGSTREAM_BROKER_PORT": str(ports),
        "LOGSTREAM_CONTROLLER_PORT": str(ports + 1),
        "LOGSTREAM_BOOTSTRAP_SERVERS": f"127.0.0.1:{ports}",
        "LOGSTREAM_INGEST_PORT": str(ports + 2),
        "LOGSTREAM_CONSUMER_METRICS_PORT": str(free_port_block(3)),
    }
    cli = [sys.executable, "-m", "logstream", "stack"]
    try:
        up = subprocess.run([*cli, "up"], env=env, capture_output=True, text=True, timeout=240)
        assert up.returncode == 0, up.stderr
        assert f"http://127.0.0.1:{ports + 2}" in up.stdout
        for name in (
            "ingest",
            "consume-likes-by-url",
            "consume-likes-by-user",
            "consume-likes-by-window",
        ):
            assert name in up.stdout
        status = subprocess.run(
            [*cli, "status"], env=env, capture_output=True, text=True, timeout=60
        )
        assert status.returncode == 0, status.stdout
        base = f"http://127.0.0.1:{ports + 2}"
        posted = httpx.post(
            f"{base}/v1/events/likes", json={"url": "https://stack", "user_id": "u1"}, timeout=30
        )
        assert posted.status_code == 202
        ack = posted.json()
        read = httpx.get(
            f"{base}/v1/views/likes-by-url",
            timeout=30,
            params={"url": "https://stack", "wait_for": f"{ack['partition']}:{ack['offset']}"},
        )
        assert read.status_code == 200 and read.json()["count"] == 1
        assert len(_pids_under(tmp_path)) >= 5  # broker + ingest + three consumers
    finally:
        down = subprocess.run([*cli, "down"], env=env, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    deadline = time.monotonic() + 10
    while _pids_under(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _pids_under(tmp_path) == []


def _status_line(status: str, name: str) -> str:
    return next((ln for ln in status.splitlines() if ln.startswith(f"{name}:")), "")


@pytest.mark.slow
def test_supervisor_restarts_a_killed_consumer_and_down_leaves_nothing(
    tmp_path: Path, kafka_bootstrap: str, unique_name
):
    env = {
        **os.environ,
        "LOGSTREAM_DATA_DIR": str(tmp_path),
        "LOGSTREAM_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LOGSTREAM_TOPIC_PREFIX": unique_name("sup") + ".",
        "LOGSTREAM_INGEST_PORT": str(free_port_block(1)),
        "LOGSTREAM_CONSUMER_METRICS_PORT": str(free_port_block(3)),
    }
    cli = [sys.executable, "-m", "logstream", "stack"]
    victim = "consume-likes-by-user"
    try:
        up = subprocess.run(
            [*cli, "up", "--no-broker"], env=env, capture_output=True, text=True, timeout=240
        )
        assert up.returncode == 0, up.stderr
        assert "supervisor: pid" in up.stdout
        old_pid = int((tmp_path / "run" / f"{victim}.pid").read_text())
        os.kill(old_pid, signal.SIGKILL)

        deadline = time.monotonic() + 30
        while True:
            status = subprocess.run(
                [*cli, "status"], env=env, capture_output=True, text=True, timeout=60
            ).stdout
            line = _status_line(status, victim)
            if line.startswith(f"{victim}: running") and "restarts 1" in line:
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.3)
        new_pid = int(line.split("pid ")[1].split(",")[0])
        assert new_pid != old_pid and _running(new_pid)
        assert "last exit signal 9 (SIGKILL)" in line
        assert "supervisor: running" in status
        for other in ("ingest", "consume-likes-by-url", "consume-likes-by-window"):
            assert "restarts 0" in _status_line(status, other), status
    finally:
        down = subprocess.run(
            [*cli, "down", "--no-broker"], env=env, capture_output=True, text=True, timeout=120
        )
    assert down.returncode == 0, down.stderr
    assert "stopped supervisor" in down.stdout
    deadline = time.monotonic() + 10
    while _pids_under(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _pids_under(tmp_path) == []
