"""`logstream ingest [--host] [--port] [--workers]`: serve the ingest API with uvicorn.

The app is built by a factory in each worker process, so every worker gets its own Kafka
producer after the fork. With several workers and metrics on, they share a multiprocess
metrics folder (logstream/metrics/exposition.py) so that /metrics counts every worker.
SIGTERM/Ctrl-C: uvicorn stops accepting, lets in-flight requests
get their broker acknowledgement (up to the graceful-shutdown timeout), then the lifespan
flushes the producer; no request answered 2xx is lost.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Annotated, Any

import typer

from logstream.auth.policy import check_bind
from logstream.settings import ENV_PREFIX, Settings, load_settings

__all__ = ["ingest"]

APP_FACTORY = "ingest_api.app:create_app"


def ingest(
    host: Annotated[str | None, typer.Option("--host", help="bind address [127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option("--port", help="TCP port [8000]")] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="worker processes [1]")
    ] = None,
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="log every request")
    ] = False,
) -> None:
    """Serve the HTTP ingest API (POST /v1/events/..., GET /readyz, docs at /docs)."""
    from uvicorn.config import LOGGING_CONFIG

    from logstream.logs import uvicorn_log_config

    settings = load_settings()  # fail here, with one line, on a bad setting
    processes = workers or settings.ingest_workers
    shared = None
    if settings.metrics and processes > 1:
        # Before the workers start: each writes its counters there, a scrape sums them.
        from logstream.metrics.exposition import prepare_multiprocess_dir

        shared = prepare_multiprocess_dir()
    log_config = uvicorn_log_config(settings.log_format)
    try:
        _serve(settings, host, port, processes, access_log, log_config or LOGGING_CONFIG)
    finally:
        if shared is not None:
            shutil.rmtree(shared, ignore_errors=True)


def _serve(
    settings: Settings,
    host: str | None,
    port: int | None,
    processes: int,
    access_log: bool,
    log_config: dict[str, Any],
) -> None:
    import uvicorn

    bind = host or settings.ingest_host
    # Each worker's app factory reads the settings again: it must see the real bind address
    # to decide whether API keys are required.
    os.environ[ENV_PREFIX + "INGEST_HOST"] = bind
    if not check_bind(
        bind,
        settings.resolved_auth_keys_file,
        trust_network=settings.ingest_trust_network,
        published_host=settings.ingest_published_host,
    ):
        logging.getLogger(__name__).warning("auth is off (loopback only, no API key file)")
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=bind,
        # Header limits, read timeouts, a connection cap and lingering close (413s reach
        # every client): see ingest_api/http_limits.py.
        http="ingest_api.http_limits:GuardedHttpProtocol",
        port=port if port is not None else settings.ingest_port,
        workers=processes,
        access_log=access_log,
        # In-flight requests wait at most the ack bound; give them that, plus a margin.
        timeout_graceful_shutdown=int(settings.ingest_ack_timeout_s) + 5,
        log_level="info",
        log_config=log_config,
    )
