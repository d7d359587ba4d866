"""Which node is the active KRaft controller (the quorum leader), asked of the cluster.

Why: a failover that kills the active controller also waits for a quorum election, so
fault tests need to know which node they kill. librdkafka cannot ask (KRaft brokers hand
clients a random broker as "controller"), so this runs Kafka's own MetadataQuorumCommand.
"""

from __future__ import annotations

import subprocess

from logstream.broker.assemble import KafkaRuntime
from logstream.errors import BrokerError

__all__ = ["quorum_leader"]


def quorum_leader(runtime: KafkaRuntime, bootstrap_servers: str, timeout_s: float = 60) -> int:
    """The node id of the active controller."""
    command = runtime.java_command(
        "org.apache.kafka.tools.MetadataQuorumCommand",
        "--bootstrap-server",
        bootstrap_servers,
        "describe",
        "--status",
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    for line in result.stdout.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "LeaderId":
            return int(value.strip())
    detail = (result.stderr or result.stdout).strip().splitlines()
    raise BrokerError(
        f"could not describe the KRaft quorum: {detail[-1] if detail else 'no output'}"
    )
