"""`logstream broker start|stop|status`: the local KRaft broker for machines without Docker."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from logstream.broker.assemble import ensure_kafka_runtime
from logstream.broker.local import LocalCluster
from logstream.cli.output import say
from logstream.settings import load_settings

__all__ = ["app", "cluster_from_options"]

app = typer.Typer(help="Run a local Apache Kafka (KRaft) assembled from Maven Central.")

NodesOpt = Annotated[int, typer.Option("--nodes", help="1, or 3 for a replicated cluster")]
PortOpt = Annotated[int | None, typer.Option("--port", help="first broker port [9092]")]
CtlPortOpt = Annotated[
    int | None, typer.Option("--controller-port", help="first controller port [9093]")
]
DataOpt = Annotated[Path | None, typer.Option("--data-dir", help="state folder [.logstream]")]


def cluster_from_options(
    nodes: int = 1,
    port: int | None = None,
    controller_port: int | None = None,
    data_dir: Path | None = None,
) -> LocalCluster:
    settings = load_settings()
    runtime = ensure_kafka_runtime(settings.kafka_version, settings.kafka_cache_dir)
    return LocalCluster(
        runtime,
        data_dir or settings.data_dir,
        nodes=nodes,
        port=port or settings.broker_port,
        controller_port=controller_port or settings.controller_port,
        heap=settings.broker_heap,
    )


@app.command()
def start(
    nodes: NodesOpt = 1,
    port: PortOpt = None,
    controller_port: CtlPortOpt = None,
    data_dir: DataOpt = None,
) -> None:
    """Start the broker (a no-op when it already runs) and wait until it is ready."""
    cluster = cluster_from_options(nodes, port, controller_port, data_dir)
    if cluster.start():
        say(f"broker started: bootstrap servers {cluster.bootstrap_servers} (data {cluster.root})")
    else:
        say(f"broker already running: bootstrap servers {cluster.bootstrap_servers}")


@app.command()
def stop(
    data_dir: DataOpt = None,
    node: Annotated[list[int] | None, typer.Option("--node", help="stop only this node id")] = None,
    timeout: Annotated[float, typer.Option(help="seconds before SIGKILL")] = 30.0,
) -> None:
    """Stop gracefully (SIGTERM), forcefully after --timeout; leaves no process behind."""
    cluster = cluster_from_options(data_dir=data_dir)
    stopped = cluster.stop(node, timeout_s=timeout)
    say(f"stopped {stopped} broker process(es)" if stopped else "broker not running")


@app.command()
def status(data_dir: DataOpt = None) -> None:
    """Say what runs where; exit 0 when every node runs, 3 when none or some do not."""
    cluster = cluster_from_options(data_dir=data_dir)
    statuses = cluster.status()
    for s in statuses:
        state = "running" if s.running else "stopped"
        pid = f" pid {s.pid}" if s.pid else ""
        listening = ", listening" if s.listening else ""
        say(f"node {s.node_id}: {state} on {s.address}{pid}{listening}")
    if not all(s.running for s in statuses):
        raise typer.Exit(3)
