"""`logstream stack up|down|status`: the whole local stack behind `make up` / `make down`.

Up: broker (local KRaft, LOGSTREAM_BROKER_NODES nodes for a new folder), event topics, then
one detached supervisor (`logstream stack supervise`) that runs the ingest API and one
`logstream consume VIEW` process per view and restarts any that crashes; logs under
`<data>/logs/`. Down stops the supervisor first, then the services, then the broker.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Annotated

import typer

from logstream.auth.policy import check_bind
from logstream.cli.broker import cluster_from_options, describe_start
from logstream.cli.output import say
from logstream.errors import LogstreamError
from logstream.settings import Settings, load_settings
from logstream.stack import ServiceSpec, ServiceState, service_states, stop_services
from logstream.supervisor import Supervisor, stop_supervisor, supervisor_pid

__all__ = ["app"]

app = typer.Typer(help="Bring the whole local stack up or down.")


def _services(settings: Settings) -> list[ServiceSpec]:
    from logstream.registry import registered_views

    exe = [sys.executable, "-m", "logstream"]
    specs = [ServiceSpec("ingest", [*exe, "ingest"])]
    ports = consumer_metrics_ports(settings)
    for name in registered_views(settings):
        argv = [*exe, "consume", name, "--no-progress"]
        if name in ports:
            argv += ["--metrics-port", str(ports[name])]
        specs.append(ServiceSpec(f"consume-{name}", argv))
    return specs


def consumer_metrics_ports(settings: Settings) -> dict[str, int]:
    """The metrics port of each view's consumer: LOGSTREAM_CONSUMER_METRICS_PORT + i."""
    from logstream.registry import registered_views

    base = settings.consumer_metrics_port
    if not settings.metrics or base == 0:
        return {}
    return {name: base + i for i, name in enumerate(registered_views(settings))}


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


def _start_supervisor(settings: Settings, names: list[str], timeout_s: float = 30.0) -> int:
    """Start the detached supervisor unless one runs; wait until every service has a pid."""
    pid = supervisor_pid(settings.data_dir)
    if pid is None:
        log_dir = settings.data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        with (log_dir / "supervisor.log").open("ab") as log:
            pid = subprocess.Popen(
                [sys.executable, "-m", "logstream", "stack", "supervise"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            ).pid
    deadline = time.monotonic() + timeout_s
    while True:
        have = {s.name for s in service_states(settings.data_dir) if s.pid is not None}
        if set(names) <= have:
            return pid
        if time.monotonic() > deadline:
            raise LogstreamError(
                f"the supervisor did not start {sorted(set(names) - have)} within "
                f"{timeout_s:.0f}s; see {settings.data_dir / 'logs' / 'supervisor.log'}"
            )
        time.sleep(0.1)


@app.command()
def up(
    broker: Annotated[
        bool, typer.Option(help="start the local broker (off: use LOGSTREAM_BOOTSTRAP_SERVERS)")
    ] = True,
) -> None:
    """Start broker, topics, ingest API and view consumers (supervised); prints what runs where."""
    from logstream.cli.topics import create as create_topics

    settings = load_settings()
    keys_file = settings.resolved_auth_keys_file
    auth_on = check_bind(
        settings.ingest_host,
        keys_file,
        trust_network=settings.ingest_trust_network,
        published_host=settings.ingest_published_host,
    )
    replicas = None
    if broker:
        cluster = cluster_from_options()
        say(describe_start(cluster, cluster.start()))
        replicas = settings.replication_for(len(cluster.brokers()))
    create_topics(partitions=None, replication_factor=replicas)
    specs = _services(settings)
    supervisor = _start_supervisor(settings, [s.name for s in specs])
    if not _wait_http(settings.ingest_host, settings.ingest_port):
        raise LogstreamError(
            f"ingest API did not answer on {settings.ingest_host}:{settings.ingest_port}; "
            f"see {settings.data_dir / 'logs' / 'ingest.log'}"
        )
    say(f"supervisor: pid {supervisor} (restarts crashed services)")
    wanted = {s.name for s in specs}
    for state in service_states(settings.data_dir):
        if state.name in wanted:
            say(f"{state.name}: pid {state.pid}, log {state.log}")
    base = f"http://{settings.ingest_host}:{settings.ingest_port}"
    say(f"ingest and query API: {base} (docs: {base}/docs, dashboard: {base}/dashboard)")
    for name, port in consumer_metrics_ports(settings).items():
        say(f"metrics of consume-{name}: http://{settings.metrics_host}:{port}/metrics")
    if auth_on:
        say(f"auth: on, API keys from {keys_file} (`logstream keys list`)")
    else:
        say(
            f"auth: off (bound to {settings.ingest_host} only, no API key file); "
            "`logstream keys create --name NAME --scope admin` turns it on"
        )
    say("stop everything with: make down")


@app.command(hidden=True)
def supervise() -> None:
    """Run the services and restart any that crashes (started by `stack up`, detached)."""
    import logging

    from logstream.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.log_format, logging.WARNING, "%(asctime)s %(message)s")
    Supervisor(_services(settings), settings.data_dir).run()


@app.command()
def down(
    broker: Annotated[bool, typer.Option(help="also stop the local broker")] = True,
) -> None:
    """Stop the supervisor, the consumers and the ingest API, then the broker; leaves no
    process behind."""
    settings = load_settings()
    if stop_supervisor(settings.data_dir):
        say("stopped supervisor")
    for name in stop_services(settings.data_dir):
        say(f"stopped {name}")
    if broker:
        stopped = cluster_from_options().stop()
        say(f"stopped {stopped} broker process(es)" if stopped else "broker not running")


def _describe(state: ServiceState) -> str:
    parts = [f"pid {state.pid}", f"restarts {state.restarts}"]
    if state.last_exit:
        parts.append(f"last exit {state.last_exit} at {state.last_exit_at}")
    if not state.running and state.restart_at:
        parts.append(f"restart due {state.restart_at}")
    parts.append(f"log {state.log}")
    if state.last_error:  # a view code error: restarting cannot help until it is fixed
        parts.append(state.last_error)
    return f"{state.name}: {'running' if state.running else 'stopped'} ({', '.join(parts)})"


@app.command()
def status() -> None:
    """What runs where, with restarts and last exits; exit 3 if anything is down."""
    settings = load_settings()
    healthy = True
    for node in cluster_from_options().status():
        healthy &= node.running
        say(
            f"broker node {node.node_id}"
            f"{'' if node.role == 'combined' else f' ({node.role})'}: "
            f"{'running' if node.running else 'stopped'} on {node.address}"
        )
    states = service_states(settings.data_dir)
    if not states:
        say("no services started (make up)")
        raise typer.Exit(3)
    pid = supervisor_pid(settings.data_dir)
    healthy &= pid is not None
    say(f"supervisor: running (pid {pid})" if pid else "supervisor: stopped (nothing restarts)")
    for state in states:
        healthy &= state.running
        say(_describe(state))
    if not healthy:
        raise typer.Exit(3)
