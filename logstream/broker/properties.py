"""`server.properties` of a local KRaft process (combined, broker-only or controller-only).

Why these values: the local cluster is where fault behaviour is tested, so it is tuned to
fail over in seconds rather than Kafka's defaults (a dead node fenced after 9 s, a new
quorum leader after 2-3 s). README, "Failover", lists the values to use in production.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

__all__ = ["FAILOVER_PROPERTIES", "server_properties"]

# A node that stops heartbeating is fenced after broker.session.timeout.ms; fencing moves
# leadership of its partitions to an in-sync replica and drops it from every ISR, so
# acks=all writes continue with min.insync.replicas=2. SIGKILL gives the controller no
# other signal (KRaft does not fence on a dropped connection), so this is the bound that
# matters. The KRaft quorum settings bound how fast a new active controller takes over when
# the killed node was it.
FAILOVER_PROPERTIES: dict[str, str | int] = {
    "broker.heartbeat.interval.ms": 100,
    "broker.session.timeout.ms": 600,
    "controller.quorum.fetch.timeout.ms": 600,
    "controller.quorum.election.timeout.ms": 300,
    "controller.quorum.election.backoff.max.ms": 200,
    "controller.quorum.request.timeout.ms": 1000,
    # A follower whose leader died backs off this long before fetching again; after a
    # leader change it must fetch from the new leader before acks=all writes complete.
    "replica.fetch.backoff.ms": 100,
    # A follower that stalls (not dead, e.g. a long GC) leaves the ISR after this long.
    "replica.lag.time.max.ms": 10000,
    # Never elect a replica that may miss acknowledged writes.
    "unclean.leader.election.enable": "false",
}


def server_properties(
    *,
    node_id: int,
    host: str,
    port: int,
    controller_port: int,
    voters: list[tuple[int, str, int]],
    data_dir: Path,
    role: str = "combined",
    brokers: int | None = None,
    secure: Mapping[str, str] | None = None,
) -> str:
    """The properties file of process `node_id` (role "combined", "broker" or "controller")
    in a cluster whose controller quorum is `voters` and that has `brokers` brokers.
    `secure`: the client listener is SASL_SSL with these extra properties
    (`logstream.broker.secure`), and brokers talk to each other through it."""
    client = "SASL_SSL" if secure is not None else "PLAINTEXT"
    broker_count = len(voters) if brokers is None else brokers
    replication = min(3, broker_count)
    min_isr = 2 if broker_count >= 3 else 1
    roles = {"combined": "broker,controller", "broker": "broker", "controller": "controller"}
    listeners = {
        "combined": f"{client}://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "broker": f"{client}://{host}:{port}",
        "controller": f"CONTROLLER://{host}:{controller_port}",
    }
    lines: dict[str, str | int | Path] = {
        "process.roles": roles[role],
        "node.id": node_id,
        "controller.quorum.voters": ",".join(f"{i}@{h}:{p}" for i, h, p in voters),
        "listeners": listeners[role],
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": f"{client}:{client},CONTROLLER:PLAINTEXT",
        "log.dirs": data_dir,
        # One node has nothing to fail over to: Kafka's defaults, which never fence the only
        # broker because a loaded machine delayed a heartbeat.
        **(FAILOVER_PROPERTIES if broker_count >= 3 else {}),
    }
    if role != "controller":
        lines.update(
            {
                "advertised.listeners": f"{client}://{host}:{port}",
                "inter.broker.listener.name": client,
                **(secure or {}),
            }
        )
    # Cluster-wide defaults on every process: in KRaft the controllers apply some of them
    # (min.insync.replicas is the cluster's default, as the controller says).
    lines.update(
        {
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
    )
    return "".join(f"{key}={value}\n" for key, value in lines.items())
