"""Questions and faults for the suite's private 3-node KRaft cluster (`local_cluster(...,
nodes=3)` from tests/conftest.py): who leads, is every replica in sync, kill nodes.

Everything goes through `LocalCluster` (its pid files and `start()`, which restarts the nodes
that are down) and plain AdminClient metadata, the way an operator would see the cluster.
"""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from logstream.broker.local import LocalCluster
from tests.faults.fencing import Downtime


class ClusterProbe:
    """Metadata questions about one cluster, through one AdminClient (short timeouts: the
    cluster may be half down when asked)."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.admin = AdminClient(
            # Quiet: connection errors to nodes the suite killed are expected, not news.
            {"bootstrap.servers": cluster.bootstrap_servers, "log_level": 0}
        )
        self._down: dict[int, float] = {}  # node id -> wall-clock time of its SIGKILL
        self.downtimes: list[Downtime] = []  # nodes killed and started again
        self.single_kills: list[Downtime] = []  # of them, brokers killed alone (not an outage)

    def leaders(self, topic: str) -> dict[int, int]:
        """partition -> leader node id (-1 while it has none)."""
        meta = self.admin.list_topics(topic, timeout=5)
        return {p: info.leader for p, info in meta.topics[topic].partitions.items()}

    def under_replicated(self) -> list[str]:
        """Every partition of every topic whose ISR is not all nodes or that has no leader."""
        meta = self.admin.list_topics(timeout=5)
        bad = []
        for name, topic in meta.topics.items():
            if topic.error is not None:
                bad.append(f"{name}: {topic.error}")
                continue
            for p, info in topic.partitions.items():
                if info.leader < 0 or len(info.isrs) < len(info.replicas):
                    bad.append(f"{name}[{p}] leader={info.leader} isr={sorted(info.isrs)}")
        return bad

    def wait_fully_replicated(self, timeout_s: float) -> float:
        """Poll until every partition has a leader and its full ISR; returns the wait."""
        start = time.monotonic()
        bad: list[str] = ["not asked yet"]
        while time.monotonic() - start < timeout_s:
            try:
                bad = self.under_replicated()
            except Exception as exc:  # the cluster is still electing
                bad = [repr(exc)]
            if not bad:
                return time.monotonic() - start
            time.sleep(0.2)
        raise AssertionError(f"not fully replicated within {timeout_s:.0f}s: {bad[:5]}")

    def min_insync_replicas(self, topic: str) -> tuple[str, str]:
        """(the topic's effective min.insync.replicas, each broker's), as the brokers say
        (one BROKER resource per describe call: Kafka refuses more)."""
        resources = [ConfigResource(ResourceType.TOPIC, topic)] + [
            ConfigResource(ResourceType.BROKER, str(node.node_id))
            for node in self.cluster.brokers()
        ]
        values = []
        for resource in resources:
            for future in self.admin.describe_configs([resource]).values():
                values.append(future.result(timeout=30)["min.insync.replicas"].value)
        return values[0], ",".join(values[1:])

    def node_pid(self, node_id: int) -> int:
        """The Java pid of a running node (from LocalCluster's pid files)."""
        for status in self.cluster.status():
            if status.node_id == node_id and status.pid is not None:
                return status.pid
        raise AssertionError(f"node {node_id} is not running: {self.cluster.status()}")

    def wait_settled(
        self, node_id: int, max_cores: float = 0.5, window_s: float = 1.0, timeout_s: float = 30.0
    ) -> float:
        """Wait until a node's JVM uses under `max_cores` of CPU over `window_s` (a JVM that
        just started spends its first seconds compiling, on the cores the cluster shares);
        returns the seconds waited, or inf when it stayed busy for `timeout_s`."""
        pid = self.node_pid(node_id)
        started = time.monotonic()
        ticks = os.sysconf("SC_CLK_TCK")
        before = _cpu_ticks(pid)
        while time.monotonic() - started < timeout_s:
            time.sleep(window_s)  # the measuring window, not a wait for a condition
            now = _cpu_ticks(pid)
            if (now - before) / ticks / window_s < max_cores:
                return time.monotonic() - started
            before = now
        return math.inf

    def note_first_start(self, started_at: float, up_at: float) -> None:
        """The cluster's first start (wall clock) counts as every node's start: a JVM just
        started competes for the CPU like a restarted one (`fencing.RESTART_GRACE_S`)."""
        self.downtimes += [Downtime(s.node_id, started_at, up_at) for s in self.cluster.status()]

    def kill_node(self, node_id: int) -> float:
        """SIGKILL one node's JVM (a crash, no controlled shutdown); returns the kill time."""
        pid = self.node_pid(node_id)
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        self._down[node_id] = time.time()
        return killed_at

    def kill_all(self) -> float:
        """SIGKILL every node at once (a power cut of the whole cluster); returns the time."""
        nodes = [(s.node_id, s.pid) for s in self.cluster.status() if s.pid is not None]
        killed_at = time.monotonic()
        for node_id, pid in nodes:
            os.kill(pid, signal.SIGKILL)
            self._down[node_id] = time.time()
        return killed_at

    def start(self, timeout_s: float) -> None:
        """Start the nodes that are down (`LocalCluster.start`), noting when they were back."""
        self.cluster.start(timeout_s=timeout_s)
        back_at = time.time()
        back = [Downtime(n, at, back_at) for n, at in self._down.items()]
        self.downtimes += back
        if len(back) == 1:  # one node was down: a broker kill, not an outage
            self.single_kills += back
        self._down.clear()

    def all_downtimes(self) -> list[Downtime]:
        """Every node killed so far, with those still down as down until now on."""
        return self.downtimes + [Downtime(n, at, math.inf) for n, at in self._down.items()]

    def fencing_logs(self) -> list[Path]:
        """The controllers' logs: where fencings are recorded."""
        return [self.cluster.log_file(n) for n in self.cluster.layout() if n.is_voter]

    def wait_all_down(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while any(s.running for s in self.cluster.status()):
            assert time.monotonic() < deadline, f"nodes still up: {self.cluster.status()}"
            time.sleep(0.05)


def _cpu_ticks(pid: int) -> int:
    """User + system CPU time of a process, in clock ticks (/proc/PID/stat fields 14, 15)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])
