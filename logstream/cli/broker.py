"""`logstream broker start|stop|status`: the local KRaft broker for machines without Docker."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from logstream.broker.assemble import ensure_kafka_runtime
from logstream.broker.local import LocalCluster, StartOutcome
from logstream.broker.secure import CLIENT_USER, MECHANISM, write_client_settings
from logstream.cli.output import say
from logstream.settings import load_settings

__all__ = ["app", "cluster_from_options", "describe_start"]

app = typer.Typer(help="Run a local Apache Kafka (KRaft) assembled from Maven Central.")

NodesOpt = Annotated[
    int | None,
    typer.Option(
        "--nodes",
        help="nodes of a new cluster, e.g. 3 for a replicated one [the folder's, else "
        "LOGSTREAM_BROKER_NODES, else 1]",
    ),
]
PortOpt = Annotated[int | None, typer.Option("--port", help="first broker port [9092]")]
CtlPortOpt = Annotated[
    int | None, typer.Option("--controller-port", help="first controller port [9093]")
]
DataOpt = Annotated[Path | None, typer.Option("--data-dir", help="state folder [.logstream]")]


def cluster_from_options(
    nodes: int | None = None,
    port: int | None = None,
    controller_port: int | None = None,
    data_dir: Path | None = None,
    *,
    secure: bool = False,
) -> LocalCluster:
    """The local cluster in the data folder. Node count: `nodes` if given, else
    LOGSTREAM_BROKER_NODES if set (both must match a cluster already in the folder), else
    the folder's, else the setting's default."""
    settings = load_settings()
    runtime = ensure_kafka_runtime(settings.kafka_version, settings.kafka_cache_dir)
    source = "--nodes"
    if nodes is None and "broker_nodes" in settings.model_fields_set:
        nodes, source = settings.broker_nodes, "LOGSTREAM_BROKER_NODES"
    return LocalCluster(
        runtime,
        data_dir or settings.data_dir,
        nodes=nodes,
        nodes_source=source,
        port=port or settings.broker_port,
        controller_port=controller_port or settings.controller_port,
        heap=settings.broker_heap,
        secure=secure,
    )


def describe_start(cluster: LocalCluster, outcome: StartOutcome) -> str:
    """One line saying what `start` did, with the bootstrap servers to use."""
    where = f"bootstrap servers {cluster.bootstrap_servers}"
    if not outcome.started:
        return f"broker already running: {where}"
    if not outcome.running:
        return f"broker started: {where} (data {cluster.root})"
    restarted = ", ".join(str(i) for i in outcome.started)
    kept = ", ".join(str(i) for i in outcome.running)
    return (
        f"broker node(s) {restarted} restarted (node(s) {kept} kept running): {where} "
        f"(data {cluster.root})"
    )


@app.command()
def start(
    nodes: NodesOpt = None,
    port: PortOpt = None,
    controller_port: CtlPortOpt = None,
    data_dir: DataOpt = None,
    secure: Annotated[
        bool,
        typer.Option(
            "--secure",
            help="a new cluster speaks only SASL/SCRAM-SHA-512 over TLS (local CA); client "
            "settings go to <data>/logstream.env, which every logstream command reads",
        ),
    ] = False,
) -> None:
    """Start the nodes that are down (a no-op when all run) and wait until they are ready."""
    cluster = cluster_from_options(nodes, port, controller_port, data_dir, secure=secure)
    say(describe_start(cluster, cluster.start()))
    material = cluster.material
    if material is not None:
        folder = data_dir or load_settings().data_dir
        written = write_client_settings(folder, cluster.bootstrap_servers, material)
        say(
            f"secure: SASL_SSL with {MECHANISM} as user {CLIENT_USER!r}, CA {material.ca}; "
            f"client settings in {written}"
        )


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
        role = "" if s.role == "combined" else f" ({s.role})"
        say(f"node {s.node_id}{role}: {state} on {s.address}{pid}{listening}")
    if not all(s.running for s in statuses):
        raise typer.Exit(3)
