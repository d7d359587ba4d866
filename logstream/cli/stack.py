"""`logstream stack up|down|status`: the whole local stack behind `make up` / `make down`.

Up: broker (local KRaft), event topics, the ingest API, and one `logstream consume VIEW`
process per view, each in the background with its log under `<data>/logs/`.
"""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from logstream.broker.assemble import ensure_kafka_runtime
from logstream.broker.local import LocalCluster
from logstream.cli.output import say
from logstream.errors import LogstreamError
from logstream.settings import Settings, load_settings
from logstream.stack import ServiceSpec, service_states, start_services, stop_services

__all__ = ["app"]

app = typer.Typer(help="Bring the whole local stack up or down.")


def _cluster(settings: Settings) -> LocalCluster:
    runtime = ensure_kafka_runtime(settings.kafka_version, settings.kafka_cache_dir)
    return LocalCluster(
        runtime,
        settings.data_dir,
        port=settings.broker_port,
        controller_port=settings.controller_port,
        heap=settings.broker_heap,
    )


def _services(settings: Settings) -> list[ServiceSpec]:
    from consumers import VIEWS

    exe = [sys.executable, "-m", "logstream"]
    specs = [ServiceSpec("ingest", [*exe, "ingest"])]
    specs += [
        ServiceSpec(f"consume-{name}", [*exe, "consume", name, "--no-progress"]) for name in VIEWS
    ]
    return specs


def _wait_http(host: str, port: int, timeout_s: float = 30.0) -> bool:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://{host}:{port}/healthz", timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


@app.command()
def up(
    broker: Annotated[
        bool, typer.Option(help="start the local broker (off: use LOGSTREAM_BOOTSTRAP_SERVERS)")
    ] = True,
) -> None:
    """Start broker, topics, ingest API and view consumers; prints what runs where."""
    from logstream.cli.topics import create as create_topics

    settings = load_settings()
    if broker:
        cluster = _cluster(settings)
        started = cluster.start()
        say(f"broker {'started' if started else 'already running'}: {cluster.bootstrap_servers}")
    create_topics(partitions=None, replication_factor=None)
    states = start_services(_services(settings), settings.data_dir)
    if not _wait_http(settings.ingest_host, settings.ingest_port):
        raise LogstreamError(
            f"ingest API did not answer on {settings.ingest_host}:{settings.ingest_port}; "
            f"see {settings.data_dir / 'logs' / 'ingest.log'}"
        )
    for state in states:
        say(f"{state.name}: pid {state.pid}, log {state.log}")
    base = f"http://{settings.ingest_host}:{settings.ingest_port}"
    say(f"ingest and query API: {base} (docs: {base}/docs)")
    say("stop everything with: make down")


@app.command()
def down(
    broker: Annotated[bool, typer.Option(help="also stop the local broker")] = True,
) -> None:
    """Stop the consumers and the ingest API, then the broker; leaves no process behind."""
    settings = load_settings()
    for name in stop_services(settings.data_dir):
        say(f"stopped {name}")
    if broker:
        stopped = _cluster(settings).stop()
        say(f"stopped {stopped} broker process(es)" if stopped else "broker not running")


@app.command()
def status() -> None:
    """What runs where; exit 3 if anything is down."""
    settings = load_settings()
    cluster = _cluster(settings)
    healthy = True
    for node in cluster.status():
        healthy &= node.running
        say(
            f"broker node {node.node_id}: {'running' if node.running else 'stopped'} "
            f"on {node.address}"
        )
    states = service_states(settings.data_dir)
    if not states:
        say("no services started (make up)")
        healthy = False
    for state in states:
        healthy &= state.running
        say(
            f"{state.name}: {'running' if state.running else 'stopped'} (pid {state.pid}, "
            f"log {state.log})"
        )
    if not healthy:
        raise typer.Exit(3)
