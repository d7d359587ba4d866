"""Run Apache Kafka (KRaft, combined broker+controller) as local Java processes.

One node by default; `nodes=3` gives a loopback cluster with replication factor 3 and
`min.insync.replicas=2` for fault tests. State lives under `<data_dir>/broker/`:
`cluster.json` (layout), and per node `node-<id>/` with its properties, data, log and pid.
Start and stop are idempotent; readiness is polled, never slept for.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from logstream.broker.assemble import KafkaRuntime
from logstream.errors import BrokerError
from logstream.processes import pid_alive, terminate

__all__ = ["LocalCluster", "NodeLayout", "NodeStatus"]

READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class NodeLayout:
    node_id: int
    host: str
    port: int
    controller_port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class NodeStatus:
    node_id: int
    address: str
    pid: int | None
    running: bool
    listening: bool


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _new_cluster_id() -> str:
    """Kafka's format: base64url of 16 random bytes; like Kafka, never starting with '-'."""
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


class LocalCluster:
    """A KRaft cluster of `nodes` local Java processes bound to loopback."""

    def __init__(
        self,
        runtime: KafkaRuntime,
        data_dir: Path,
        *,
        nodes: int = 1,
        host: str = "127.0.0.1",
        port: int = 9092,
        controller_port: int = 9093,
        heap: str = "512m",
    ) -> None:
        if nodes < 1:
            raise BrokerError("--nodes must be at least 1")
        self.runtime = runtime
        self.root = data_dir.resolve() / "broker"
        self.heap = heap
        self._requested = [
            NodeLayout(i + 1, host, port + 2 * i, controller_port + 2 * i) for i in range(nodes)
        ]

    # ----- layout --------------------------------------------------------------------------
    @property
    def _layout_file(self) -> Path:
        return self.root / "cluster.json"

    def layout(self) -> list[NodeLayout]:
        """The layout on disk if a cluster was ever started here, else the requested one."""
        if self._layout_file.exists():
            saved = json.loads(self._layout_file.read_text())
            return [NodeLayout(**node) for node in saved["nodes"]]
        return self._requested

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.address for node in self.layout())

    def _node_dir(self, node: NodeLayout) -> Path:
        return self.root / f"node-{node.node_id}"

    def _pid_file(self, node: NodeLayout) -> Path:
        return self._node_dir(node) / "kafka.pid"

    def log_file(self, node: NodeLayout) -> Path:
        return self._node_dir(node) / "kafka.log"

    def _read_pid(self, node: NodeLayout) -> int | None:
        try:
            return int(self._pid_file(node).read_text().strip())
        except (OSError, ValueError):
            return None

    # ----- status --------------------------------------------------------------------------
    def status(self) -> list[NodeStatus]:
        result = []
        for node in self.layout():
            pid = self._read_pid(node)
            running = pid is not None and pid_alive(pid)
            result.append(
                NodeStatus(
                    node.node_id,
                    node.address,
                    pid if running else None,
                    running,
                    running and _port_open(node.host, node.port),
                )
            )
        return result

    def is_running(self) -> bool:
        statuses = self.status()
        return bool(statuses) and all(s.running for s in statuses)

    # ----- start ---------------------------------------------------------------------------
    def start(self, *, timeout_s: float = READY_TIMEOUT_S) -> bool:
        """Start every node that is not running; False if all already ran (a no-op)."""
        layout = self.layout()
        if self._layout_file.exists() and len(layout) != len(self._requested):
            raise BrokerError(
                f"{self.root} holds a {len(layout)}-node cluster; stop it and remove the "
                f"folder to start a {len(self._requested)}-node one"
            )
        statuses = {s.node_id: s for s in self.status()}
        to_start = [node for node in layout if not statuses[node.node_id].running]
        if not to_start:
            return False
        self._check_ports_free(to_start)
        self._write_layout(layout)
        for node in to_start:
            self._prepare(node, layout)
        for node in to_start:
            self._launch(node)
        self.wait_ready(to_start, timeout_s=timeout_s)
        return True

    def _check_ports_free(self, nodes: list[NodeLayout]) -> None:
        for node in nodes:
            for port in (node.port, node.controller_port):
                if _port_open(node.host, port):
                    raise BrokerError(
                        f"port {node.host}:{port} is already in use by another process: stop it "
                        "or choose other ports (--port/--controller-port, LOGSTREAM_BROKER_PORT)"
                    )

    def _write_layout(self, layout: list[NodeLayout]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._layout_file.exists():
            return
        payload = {"cluster_id": _new_cluster_id(), "nodes": [asdict(n) for n in layout]}
        self._layout_file.write_text(json.dumps(payload, indent=2) + "\n")

    def _cluster_id(self) -> str:
        return str(json.loads(self._layout_file.read_text())["cluster_id"])

    def _properties(self, node: NodeLayout, layout: list[NodeLayout]) -> str:
        voters = ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in layout)
        replication = min(3, len(layout))
        min_isr = 2 if len(layout) >= 3 else 1
        lines = {
            "process.roles": "broker,controller",
            "node.id": node.node_id,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{node.host}:{node.port},CONTROLLER://{node.host}:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{node.host}:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": self._node_dir(node) / "data",
            "num.partitions": 6,
            "default.replication.factor": replication,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": replication,
            "offsets.topic.num.partitions": 12,
            "transaction.state.log.replication.factor": replication,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replication,
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": 0,
            "auto.create.topics.enable": "false",
            "log.retention.hours": -1,
            "log.message.timestamp.type": "CreateTime",
            # Event time may lie far in the past (backfills, re-imported history).
            "log.message.timestamp.before.max.ms": 9223372036854775807,
            "log.message.timestamp.after.max.ms": 3600000,
            "num.network.threads": 2,
            "num.io.threads": 4,
        }
        return "".join(f"{key}={value}\n" for key, value in lines.items())

    def _prepare(self, node: NodeLayout, layout: list[NodeLayout]) -> None:
        node_dir = self._node_dir(node)
        (node_dir / "data").mkdir(parents=True, exist_ok=True)
        props = node_dir / "server.properties"
        props.write_text(self._properties(node, layout))
        if (node_dir / "data" / "meta.properties").exists():
            return
        command = self.runtime.java_command(
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={self._cluster_id()}",
            f"--config={props}",
            "--ignore-formatted",
        )
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise BrokerError(
                f"formatting node {node.node_id} storage failed: "
                f"{detail[0] if detail else 'no output'}"
            )

    def _launch(self, node: NodeLayout) -> None:
        node_dir = self._node_dir(node)
        command = self.runtime.java_command(
            "kafka.Kafka", str(node_dir / "server.properties"), heap=self.heap
        )
        with self.log_file(node).open("ab") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=node_dir,
                start_new_session=True,
            )
        self._pid_file(node).write_text(f"{process.pid}\n")

    def wait_ready(self, nodes: list[NodeLayout] | None = None, *, timeout_s: float) -> None:
        """Poll until each node accepts connections and the cluster sees all brokers."""
        from confluent_kafka.admin import AdminClient

        nodes = nodes or self.layout()
        deadline = time.monotonic() + timeout_s
        for node in nodes:
            while not _port_open(node.host, node.port):
                self._fail_if_dead(node)
                if time.monotonic() > deadline:
                    raise BrokerError(
                        f"node {node.node_id} did not listen on {node.address} within "
                        f"{timeout_s:.0f}s; see {self.log_file(node)}"
                    )
                time.sleep(0.2)
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        expected = {n.node_id for n in nodes}
        while True:
            try:
                brokers = set(admin.list_topics(timeout=2).brokers)
            except Exception:  # the cluster is still electing a controller
                brokers = set()
            if expected <= brokers:
                return
            for node in nodes:
                self._fail_if_dead(node)
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"cluster did not report brokers {sorted(expected)} within {timeout_s:.0f}s; "
                    f"see logs under {self.root}"
                )
            time.sleep(0.2)

    def _fail_if_dead(self, node: NodeLayout) -> None:
        pid = self._read_pid(node)
        if pid is not None and pid_alive(pid):
            return
        tail = self._log_tail(node)
        raise BrokerError(f"node {node.node_id} exited during start-up: {tail}")

    def _log_tail(self, node: NodeLayout) -> str:
        try:
            lines = self.log_file(node).read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        errors = [ln for ln in lines if " ERROR " in ln or "Exception" in ln]
        return ((errors or lines or ["no log output"])[-1])[:300] + f" (log: {self.log_file(node)})"

    # ----- stop ----------------------------------------------------------------------------
    def stop(self, node_ids: list[int] | None = None, *, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then SIGKILL after `timeout_s`; returns how many processes were stopped."""
        targets = [n for n in self.layout() if node_ids is None or n.node_id in node_ids]
        pids = [pid for node in targets if (pid := self._read_pid(node)) is not None]
        stopped = terminate(pids, timeout_s)
        for node in targets:
            self._pid_file(node).unlink(missing_ok=True)
        return len(stopped)
