"""`logstream broker` start/status/stop through the real CLI, on private ports and folders."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.conftest import free_port_block, free_port_pair


def run_cli(
    *args: str, env_extra: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "logstream", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def process_running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie waiting for init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def test_start_status_start_again_stop_status(tmp_path: Path):
    port = free_port_pair()
    where = ["--data-dir", str(tmp_path)]
    started = run_cli(
        "broker", "start", "--port", str(port), "--controller-port", str(port + 1), *where
    )
    assert started.returncode == 0, started.stderr
    assert f"127.0.0.1:{port}" in started.stdout
    try:
        status = run_cli("broker", "status", *where)
        assert status.returncode == 0
        assert "running" in status.stdout and "listening" in status.stdout
        pid = int(status.stdout.split(" pid ")[1].split(",")[0])

        again = run_cli(
            "broker", "start", "--port", str(port), "--controller-port", str(port + 1), *where
        )
        assert again.returncode == 0
        assert "already running" in again.stdout
        assert f"pid {pid}" in run_cli("broker", "status", *where).stdout  # same process
    finally:
        stopped = run_cli("broker", "stop", *where)
    assert stopped.returncode == 0
    assert "stopped 1" in stopped.stdout
    after = run_cli("broker", "status", *where)
    assert after.returncode == 3
    assert "stopped" in after.stdout
    assert not process_running(pid)


def test_port_taken_gives_one_clear_line(tmp_path: Path):
    port = free_port_pair()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = run_cli(
            "broker",
            "start",
            "--port",
            str(port),
            "--controller-port",
            str(port + 1),
            "--data-dir",
            str(tmp_path),
        )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: port 127.0.0.1:") and "in use" in lines[0]
    assert "Traceback" not in result.stderr and "Exception" not in result.stderr


def test_missing_maven_gives_one_clear_line(tmp_path: Path):
    java_dir = str(Path(sys.executable).parent)
    result = run_cli(
        "broker",
        "status",
        env_extra={"PATH": java_dir, "LOGSTREAM_KAFKA_CACHE_DIR": str(tmp_path / "empty-cache")},
    )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "not found on PATH" in result.stderr


@pytest.mark.slow
def test_three_node_cluster_survives_one_node_down(tmp_path: Path, unique_name):
    base = free_port_block(6)
    where = ["--data-dir", str(tmp_path)]
    started = run_cli(
        "broker",
        "start",
        "--nodes",
        "3",
        "--port",
        str(base),
        "--controller-port",
        str(base + 1),
        *where,
    )
    assert started.returncode == 0, started.stderr
    bootstrap = started.stdout.split("bootstrap servers ")[1].split(" ")[0]
    assert len(bootstrap.split(",")) == 3
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topic = unique_name("rf3")
        admin.create_topics([NewTopic(topic, 3, 3, config={"min.insync.replicas": "2"})])[
            topic
        ].result(timeout=60)
        stopped = run_cli("broker", "stop", "--node", "2", *where)
        assert stopped.returncode == 0 and "stopped 1" in stopped.stdout

        producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "message.timeout.ms": 60000,
            }
        )
        delivered, failed = [], []
        for i in range(300):
            producer.produce(
                topic,
                value=str(i).encode(),
                on_delivery=lambda e, m: (failed if e else delivered).append(e or m),
            )
        assert producer.flush(90) == 0
        assert failed == []
        assert len(delivered) == 300

        # No --nodes: the node count comes from the folder; only the dead node starts.
        restarted = run_cli("broker", "start", *where)
        assert restarted.returncode == 0, restarted.stderr
        assert "node(s) 2 restarted (node(s) 1, 3, 101, 102, 103 kept running)" in restarted.stdout
        again = run_cli("broker", "start", *where)  # all running: a no-op
        assert again.returncode == 0 and "already running" in again.stdout
        status = run_cli("broker", "status", *where).stdout  # 3 brokers, 3 controllers
        assert status.count("running") == 6 and status.count("(controller)") == 3
        # The node count through the setting, as `make up` passes it: the same answers.
        same = run_cli("broker", "start", *where, env_extra={"LOGSTREAM_BROKER_NODES": "3"})
        assert same.returncode == 0 and "already running" in same.stdout

        # A conflicting explicit node count: one clear line, and never "delete your data".
        for args, env in (
            (["--nodes", "1"], None),
            ([], {"LOGSTREAM_BROKER_NODES": "1"}),
        ):
            conflict = run_cli("broker", "start", *args, *where, env_extra=env)
            assert conflict.returncode == 1
            lines = conflict.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), conflict.stderr
            assert "3-node cluster" in lines[0]
            assert not any(w in lines[0].lower() for w in ("remove", "delete", "rm "))
    finally:
        run_cli("broker", "stop", *where)
    status = run_cli("broker", "status", *where)
    assert status.stdout.count("stopped") == 6  # 3 brokers, 3 controllers
