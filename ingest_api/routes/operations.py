"""`GET /metrics` (Prometheus), `GET /v1/status` (the dashboard's numbers), `GET /dashboard`.

The dashboard is plain HTML and JavaScript shipped in the package (`ingest_api/dashboard/`),
with charts drawn as SVG by its own code: it needs no internet access. It reads
`/v1/status` and the view APIs, the same JSON any client gets.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from prometheus_client import CollectorRegistry
from starlette.concurrency import run_in_threadpool

from ingest_api.errors import ApiError
from logstream.metrics.exposition import CONTENT_TYPE_LATEST, render
from logstream.metrics.views import ViewsCollector

__all__ = ["router"]

router = APIRouter(tags=["operations"])

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboard"
_ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}


def _counters(request: Request) -> CollectorRegistry | None:
    """The HTTP and ingest counters of every worker; None when metrics are off."""
    registry: CollectorRegistry | None = getattr(request.app.state, "counters_registry", None)
    return registry


def _fold(request: Request) -> None:
    """Bring the counters up to this request (on the event loop, where they are tallied)."""
    ingest_metrics = getattr(request.app.state, "ingest_metrics", None)
    if ingest_metrics is not None:
        ingest_metrics.fold()


@router.get("/metrics", response_class=Response, include_in_schema=True)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition: HTTP, ingest and every view version's lag."""
    counters = _counters(request)
    if counters is None:
        raise ApiError(404, "metrics_off", "metrics are off (LOGSTREAM_METRICS=false)")
    _fold(request)
    # Off the event loop: the lag is read from the view stores.
    body = await run_in_threadpool(render, counters, request.app.state.views_registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def ingest_totals(registry: CollectorRegistry) -> dict[str, float]:
    """Totals since start (summed over workers) that the dashboard turns into rates."""
    totals = dict.fromkeys(("events_accepted", "events_rejected", "requests", "errors"), 0.0)
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == "logstream_ingest_events_accepted_total":
                totals["events_accepted"] += sample.value
            elif sample.name == "logstream_ingest_events_rejected_total":
                totals["events_rejected"] += sample.value
            elif sample.name == "logstream_http_requests_total":
                totals["requests"] += sample.value
                if sample.labels.get("status", "").startswith("5"):
                    totals["errors"] += sample.value
    return totals


@router.get("/v1/status")
async def status(request: Request) -> dict[str, Any]:
    """Every view version (lag in offsets and seconds, progress, dead letters) and, with
    metrics on, ingest totals since start."""
    views: ViewsCollector = request.app.state.views_collector
    counters = _counters(request)
    _fold(request)

    def read() -> dict[str, Any]:  # off the event loop: stores and metric files
        return {
            "time_ms": int(time.time() * 1000),
            "views": [s.as_json() for s in views.statuses()],
            "ingest": ingest_totals(counters) if counters is not None else None,
        }

    return await run_in_threadpool(read)


@router.get("/dashboard", include_in_schema=False)
def dashboard() -> FileResponse:
    return FileResponse(DASHBOARD_DIR / "index.html", media_type="text/html")


@router.get("/dashboard/{asset}", include_in_schema=False)
def dashboard_asset(asset: str) -> FileResponse:
    media_type = _ASSETS.get(asset)
    if media_type is None:
        raise ApiError(404, "not_found", f"no dashboard file {asset!r}")
    return FileResponse(DASHBOARD_DIR / asset, media_type=media_type)
