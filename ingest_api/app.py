"""`create_app()`: the ingest + read API. Serve it with `logstream ingest` (uvicorn factory).

Nothing happens at import: the settings and the schema catalogue are read when the app is
created (every event type of the catalogue gets its routes, compiled from its `.avsc`), and
the codec and producer are built in the lifespan, i.e. once per worker process after any
fork. On shutdown (SIGTERM) uvicorn first lets in-flight requests finish (each waits for
its broker acknowledgement), then the lifespan flushes the producer.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from ingest_api.access import AccessControl
from ingest_api.avro_validation import compile_event_models
from ingest_api.edge import EdgeLayer
from ingest_api.errors import install_error_handlers
from ingest_api.openapi_security import document_security
from ingest_api.rate_limits import RateLimiter
from ingest_api.routes import contract, health, operations
from ingest_api.routes.events import event_router
from ingest_api.service import IngestState
from ingest_api.view_readers import ViewReaders
from logstream.auth.keys import KeyRing
from logstream.auth.policy import check_bind
from logstream.codec import Codec
from logstream.gc_tuning import freeze_startup_heap
from logstream.metrics.arrivals import LogEndHistory
from logstream.metrics.exposition import mark_worker_dead, render
from logstream.metrics.views import ViewsCollector, ViewTarget
from logstream.producer import EventProducer
from logstream.redact import install_log_redaction
from logstream.registry import view_registry
from logstream.schemas import SchemaCatalogue
from logstream.settings import Settings, load_settings
from logstream.view import View

__all__ = ["create_app"]

log = logging.getLogger(__name__)

SHUTDOWN_FLUSH_S = 30.0
STARTUP_RENDER_S = 2.0  # the longest the first /metrics render may delay the start
VIEWS_ROUTER_MODULE = "ingest_api.routes.views"


def create_app(
    settings: Settings | None = None, *, topic_overrides: Mapping[str, str] | None = None
) -> FastAPI:
    """Build the app. `topic_overrides` maps event type (e.g. "like") to another topic name,
    for tests and side-by-side deployments; by default each event type's `.avsc` names it."""
    install_log_redaction()
    resolved = settings if settings is not None else load_settings()
    overrides = dict(topic_overrides or {})
    keys_file = resolved.resolved_auth_keys_file
    auth_on = check_bind(
        resolved.ingest_host,
        keys_file,
        trust_network=resolved.ingest_trust_network,
        published_host=resolved.ingest_published_host,
    )
    if not auth_on:
        log.warning(
            "auth is off: no API key file at %s and the server is bound to %s (loopback "
            "only); `logstream keys create` turns it on",
            keys_file,
            resolved.ingest_host,
        )
    catalogue = SchemaCatalogue.load(resolved.resolved_schema_dir)
    models = compile_event_models(catalogue)
    topics = {
        t: overrides.get(t, resolved.topic_prefix + catalogue.topic_for(t))
        for t in catalogue.event_types()
    }

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        producer = EventProducer(resolved)
        await producer.start()
        queue_sampler = start_producer_metrics(app, producer)
        lag_sampler = app.state.views_collector.sampler().start()
        app.state.ingest = IngestState(resolved, Codec(catalogue), producer, topics, models)
        await render_metrics_once(app)
        freeze_startup_heap()
        try:
            yield
        finally:
            app.state.ingest = None
            if queue_sampler is not None:
                queue_sampler.cancel()
            await asyncio.to_thread(lag_sampler.stop)
            await asyncio.to_thread(app.state.view_readers.close)  # reopened lazily
            try:
                left = await producer.close(SHUTDOWN_FLUSH_S)
                if left:
                    log.error("%d message(s) not delivered at shutdown (none acknowledged)", left)
            finally:
                if app.state.ingest_metrics is not None:
                    app.state.ingest_metrics.fold()  # this worker's last counts
                mark_worker_dead()

    app = FastAPI(
        title="logstream ingest",
        summary="Append events to the log (answers once the broker has them) and read views.",
        version="1",
        lifespan=lifespan,
    )
    app.state.ingest = None
    app.state.settings = resolved
    app.state.view_readers = ViewReaders(resolved)
    registry = view_registry(resolved)  # built-ins, entry points, LOGSTREAM_VIEWS
    for broken in registry.broken:  # listed by GET /v1/views; the other views are served
        log.warning("view registration skipped: %s", broken.error)
    app.state.views = registry.views
    app.state.broken_views = registry.broken
    install_error_handlers(app)
    limiter = RateLimiter(
        resolved.rate_requests_per_s, resolved.rate_events_per_s, resolved.rate_burst_s
    )
    app.state.rate_limiter = limiter
    keyring = KeyRing(keys_file, required=auth_on)
    install_operations(app, resolved)
    access = AccessControl(keyring, limiter)
    app.add_middleware(EdgeLayer, access=access, metrics=app.state.ingest_metrics)
    # first: the most frequent requests match at once
    app.include_router(event_router(list(models.values())))
    app.include_router(health.router)
    app.include_router(contract.router)
    app.include_router(operations.router)
    # --- read router (owned by the lead): /v1/views/... ------------------------------------
    # Included when `ingest_api/routes/views.py` exists; an error inside it still surfaces.
    if importlib.util.find_spec(VIEWS_ROUTER_MODULE) is not None:
        views = importlib.import_module(VIEWS_ROUTER_MODULE)
        app.include_router(views.router)
        # Every registered view's generated routes, after the specific ones (they win).
        from ingest_api.routes.view_queries import view_query_router

        taken = {
            (method, route.path)
            for route in views.router.routes
            if isinstance(route, APIRoute)
            for method in route.methods or ()
        }
        app.include_router(view_query_router(app.state.views, taken))
    document_security(app)
    return app


def install_operations(app: FastAPI, settings: Settings) -> None:
    """View lag for `/v1/status` and `/metrics`; with metrics on, the HTTP and ingest
    counters (`app.state.ingest_metrics`, fed by the edge layer) and the registry a scrape
    reads."""
    views: dict[str, View] = app.state.views
    readers: ViewReaders = app.state.view_readers
    registry = readers.versions

    def targets() -> list[ViewTarget]:
        out = []
        for view in views.values():
            current = registry.current(view.name)
            out += [ViewTarget(view, v, v == current) for v in registry.versions(view.name)]
        return out

    collector = ViewsCollector(
        settings,
        targets,
        lambda target: readers.store_of(target.view, target.version),
        readers.end_offsets,
        LogEndHistory(),
    )
    app.state.views_collector = collector
    app.state.counters_registry = None
    app.state.ingest_metrics = None
    if not settings.metrics:
        return
    from prometheus_client import CollectorRegistry

    from ingest_api.metrics import IngestMetrics
    from logstream.metrics.exposition import registry_of, scrape_registry

    own = CollectorRegistry()
    app.state.ingest_metrics = IngestMetrics(own)
    app.state.counters_registry = scrape_registry(own)
    app.state.views_registry = registry_of(collector)


async def render_metrics_once(app: FastAPI) -> None:
    """Render `/metrics` once before the start-up heap is frozen, when metrics are on.

    Why: the first scrape opens every view store and builds what later scrapes reuse. Made
    after the freeze, under load, it took ~0.26 s and left the server ~5 % slower for the
    rest of the run (measured with bench-ingest's scrapes; most likely because those
    objects were then walked by every full collection); made here and frozen, a scrape
    under load takes ~30 ms and leaves nothing measurable behind. Best effort, and at most
    `STARTUP_RENDER_S`: a broker that does not answer yet delays the start no longer, and a
    store or broker that fails now fails the scrape that needs it, not the start."""
    counters = app.state.counters_registry
    if counters is None:
        return
    try:
        await asyncio.wait_for(
            run_in_threadpool(render, counters, app.state.views_registry), STARTUP_RENDER_S
        )
    except TimeoutError:
        log.info("rendering /metrics at start-up took over %g s; serving anyway", STARTUP_RENDER_S)
    except Exception as exc:
        log.warning("rendering /metrics at start-up failed (retried at each scrape): %s", exc)


def start_producer_metrics(app: FastAPI, producer: EventProducer) -> asyncio.Task[None] | None:
    """Broker ack latency, the producer queue gauge and the folds, when metrics are on."""
    metrics = app.state.ingest_metrics
    if metrics is None:
        return None
    from ingest_api.metrics import fold_every_second

    producer.on_ack = metrics.observe_ack
    return asyncio.get_running_loop().create_task(fold_every_second(metrics, producer))
