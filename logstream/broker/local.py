"""Run Apache Kafka (KRaft) as local Java processes.

One node by default (broker and controller in one process). `nodes=3` or more gives a
loopback cluster with replication factor 3 and `min.insync.replicas=2` whose brokers
(ids 1..n, on port + 2i) run beside three dedicated controllers (ids 101..103, on
controller_port + 2i), as Kafka recommends for production: a broker's death then never
takes the active controller with it, so its partitions fail over after one broker session
timeout instead of a quorum election plus that timeout (measured: 1-2 s instead of 3-3.6 s
under load). Folders made before this keep their combined layout. State lives under
`<data_dir>/broker/`: `cluster.json` (layout), and per process `node-<id>/` with its
properties, data, log and pid. The folder's layout is
the truth once it exists: start brings up exactly the nodes of that layout that are down
(a no-op when all run), and never asks anyone to delete a log to change the node count.
Readiness is polled, never slept for. Server properties: `logstream.broker.properties`.
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
from typing import Any

from logstream.broker.assemble import KafkaRuntime, write_private
from logstream.broker.properties import server_properties
from logstream.broker.secure import CLIENT_USER, SecureMaterial, ensure_material, load_material
from logstream.errors import BrokerError
from logstream.kafka.config import sasl_ssl_properties
from logstream.processes import pid_alive, terminate

__all__ = ["LocalCluster", "NodeLayout", "NodeStatus", "StartOutcome"]

READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


# From this many nodes on, brokers and controllers run as separate processes.
SPLIT_ROLES_FROM_NODES = 3
CONTROLLERS = 3
CONTROLLER_ID_BASE = 100


@dataclass(frozen=True)
class NodeLayout:
    """One Kafka process. `role`: "combined" (broker and controller), "broker" or
    "controller"; `port` is what it listens on first (a controller's is its controller port)."""

    node_id: int
    host: str
    port: int
    controller_port: int
    role: str = "combined"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def is_broker(self) -> bool:
        return self.role != "controller"

    @property
    def is_voter(self) -> bool:
        return self.role != "broker"


def requested_layout(nodes: int, host: str, port: int, controller_port: int) -> list[NodeLayout]:
    """Node i's broker listens on port + 2i; controllers on controller_port + 2i."""
    if nodes < SPLIT_ROLES_FROM_NODES:
        return [
            NodeLayout(i + 1, host, port + 2 * i, controller_port + 2 * i) for i in range(nodes)
        ]
    brokers = [
        NodeLayout(i + 1, host, port + 2 * i, controller_port + 2 * i, "broker")
        for i in range(nodes)
    ]
    controllers = [
        NodeLayout(
            CONTROLLER_ID_BASE + i + 1,
            host,
            controller_port + 2 * i,
            controller_port + 2 * i,
            "controller",
        )
        for i in range(CONTROLLERS)
    ]
    return brokers + controllers


@dataclass(frozen=True)
class StartOutcome:
    """What `start` did: node ids it started and node ids that already ran."""

    started: list[int]
    running: list[int]

    @property
    def changed(self) -> bool:
        return bool(self.started)


@dataclass(frozen=True)
class NodeStatus:
    node_id: int
    address: str
    pid: int | None
    running: bool
    listening: bool
    role: str = "combined"


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
        nodes: int | None = None,
        nodes_source: str = "--nodes",
        host: str = "127.0.0.1",
        port: int = 9092,
        controller_port: int = 9093,
        heap: str = "512m",
        secure: bool = False,
    ) -> None:
        """`secure`: a new cluster speaks only SASL/SCRAM over TLS (`logstream.broker.secure`);
        a folder that holds a secure cluster stays secure without it."""
        if nodes is not None and nodes < 1:
            raise BrokerError(f"{nodes_source} must be at least 1")
        self.runtime = runtime
        self.root = data_dir.resolve() / "broker"
        self.heap = heap
        # None: whatever the folder holds (one node for a new folder).
        self._requested_nodes = nodes
        self._nodes_source = nodes_source
        self._requested = requested_layout(nodes or 1, host, port, controller_port)
        self._secure_requested = secure

    # ----- security ------------------------------------------------------------------------
    @property
    def material(self) -> SecureMaterial | None:
        """The TLS and SCRAM material of a secure cluster, None for a plaintext one."""
        return load_material(self.root)

    def _secure_material(self) -> SecureMaterial | None:
        """The material to start with, generated for a new secure cluster."""
        material = self.material
        if material is not None or not self._secure_requested:
            return material
        if self._layout_file.exists():
            raise BrokerError(
                f"{self.root} holds a plaintext cluster: --secure needs a new data folder "
                "(--data-dir), its log cannot change protocol in place"
            )
        return ensure_material(self.root)

    def client_config(self) -> dict[str, Any]:
        """librdkafka properties that reach this cluster (as the stack's SCRAM user)."""
        material = self.material
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers}
        if material is not None:
            conf.update(
                sasl_ssl_properties(CLIENT_USER, material.client_password, str(material.ca))
            )
        return conf

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

    def brokers(self) -> list[NodeLayout]:
        """The processes that serve clients (every node of a combined layout)."""
        return [node for node in self.layout() if node.is_broker]

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.address for node in self.brokers())

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
                    node.role,
                )
            )
        return result

    def is_running(self) -> bool:
        statuses = self.status()
        return bool(statuses) and all(s.running for s in statuses)

    # ----- start ---------------------------------------------------------------------------
    def check_node_count(self) -> None:
        """Refuse an explicit node count that differs from the cluster in the folder.

        The folder's data is a log kept forever: the answer is never to delete it, but to
        start it as it is (no node count) or to use another folder.
        """
        if not self._layout_file.exists() or self._requested_nodes is None:
            return
        held = len(self.brokers())
        if held != self._requested_nodes:
            raise BrokerError(
                f"{self.root} holds a {held}-node cluster but {self._nodes_source} asks for "
                f"{self._requested_nodes}: leave the node count out to start the {held}-node "
                "cluster, or use another data folder for a new one"
            )

    def start(self, *, timeout_s: float = READY_TIMEOUT_S) -> StartOutcome:
        """Start every node of the layout that is not running (all already running: a no-op)."""
        self.check_node_count()
        layout = self.layout()
        statuses = {s.node_id: s for s in self.status()}
        to_start = [node for node in layout if not statuses[node.node_id].running]
        running = [node.node_id for node in layout if statuses[node.node_id].running]
        if not to_start:
            return StartOutcome([], running)
        self._check_ports_free(to_start)
        material = self._secure_material()
        self._write_layout(layout)
        for node in to_start:
            self._prepare(node, layout, material)
        for node in to_start:
            self._launch(node)
        self.wait_ready(to_start, timeout_s=timeout_s)
        return StartOutcome([node.node_id for node in to_start], running)

    def _check_ports_free(self, nodes: list[NodeLayout]) -> None:
        for node in nodes:
            ports = (node.port, node.controller_port) if node.role == "combined" else (node.port,)
            for port in ports:
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

    def _prepare(
        self, node: NodeLayout, layout: list[NodeLayout], material: SecureMaterial | None
    ) -> None:
        node_dir = self._node_dir(node)
        node_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (node_dir / "data").mkdir(mode=0o700, exist_ok=True)
        props = node_dir / "server.properties"
        write_private(  # 0600: it holds the inter-broker SCRAM password in secure mode
            props,
            server_properties(
                node_id=node.node_id,
                host=node.host,
                port=node.port,
                controller_port=node.controller_port,
                voters=[(n.node_id, n.host, n.controller_port) for n in layout if n.is_voter],
                data_dir=node_dir / "data",
                role=node.role,
                brokers=sum(1 for n in layout if n.is_broker),
                secure=material.server_properties() if material is not None else None,
            ),
        )
        if (node_dir / "data" / "meta.properties").exists():
            return
        argfile = node_dir / "format.args"  # the SCRAM passwords: never on the command line
        command = self.runtime.java_command(
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={self._cluster_id()}",
            f"--config={props}",
            "--ignore-formatted",
            *(material.scram_args() if material is not None else ()),
            argfile=argfile,
        )
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=False)
        finally:
            argfile.unlink(missing_ok=True)
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
        admin = AdminClient(self.client_config())
        expected = {n.node_id for n in nodes if n.is_broker}
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
        stopped: list[int] = []
        # Brokers first: a broker's controlled shutdown asks the active controller, so the
        # controllers must outlive it (a combined node carries its own controller).
        for group in ([n for n in targets if n.is_broker], [n for n in targets if not n.is_broker]):
            pids = [pid for node in group if (pid := self._read_pid(node)) is not None]
            stopped += terminate(pids, timeout_s)
        for node in targets:
            self._pid_file(node).unlink(missing_ok=True)
        return len(stopped)
