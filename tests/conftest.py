"""Shared fixtures: free ports and unique names. Broker fixtures live in tests/integration."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from logstream.broker.local import LocalCluster


def free_port_block(size: int = 2) -> int:
    """A port p such that p .. p+size-1 are all free on loopback (brokers + controllers)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + size >= 65000:
            continue
        sockets = [socket.socket() for _ in range(size)]
        try:
            for offset, sock in enumerate(sockets):
                sock.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return port
    raise RuntimeError("no free block of ports on 127.0.0.1")


def free_port_pair() -> int:
    return free_port_block(2)


def local_cluster(data_dir: Path, heap: str = "512m", nodes: int = 1) -> LocalCluster:
    """A (not yet started) local broker of `nodes` nodes on free ports under `data_dir`
    (node i listens on port + 2i, its controller on port + 2i + 1)."""
    from logstream.broker.assemble import ensure_kafka_runtime
    from logstream.broker.local import LocalCluster
    from logstream.settings import load_settings

    settings = load_settings()
    runtime = ensure_kafka_runtime(settings.kafka_version, settings.kafka_cache_dir)
    port = free_port_block(2 * nodes)
    return LocalCluster(
        runtime, data_dir, nodes=nodes, port=port, controller_port=port + 1, heap=heap
    )


@pytest.fixture
def unique_name():
    """A factory of collision-free names: `unique_name("likes")` -> `likes-3f9a1c2b`."""

    def make(prefix: str = "t") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    return make
