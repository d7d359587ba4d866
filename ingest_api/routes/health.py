"""`GET /healthz` (the process answers) and `GET /readyz` (the broker answers, topics exist).

Orchestrators route traffic on readiness, restart on liveness: a broker outage must make
ingest unready, never "dead", or every replica would be restarted for nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from confluent_kafka import KafkaException
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ingest_api.access import sees_internals
from ingest_api.deps import StateDep
from ingest_api.errors import error_body
from ingest_api.models import Health, Readiness

__all__ = ["router"]

router = APIRouter(tags=["health"])

READY_PROBE_MAX_S = 2.0


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    """The process is alive and serving HTTP."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(state: StateDep, request: Request) -> JSONResponse:
    """Ready when the broker answers a metadata request and every event topic exists.
    Where the broker is and its raw error are shown to `admin` keys only."""
    timeout = min(READY_PROBE_MAX_S, state.settings.ingest_ack_timeout_s)
    wanted = sorted(set(state.topics.values()))
    try:
        metadata = await asyncio.to_thread(state.producer.list_topics, timeout)
    except KafkaException as exc:
        if not sees_internals(request):
            return _not_ready(
                "unreachable",
                dict.fromkeys(wanted, "unknown"),
                f"the broker did not answer within {timeout:g}s",
            )
        return _not_ready(
            f"unreachable: {exc.args[0]}",
            dict.fromkeys(wanted, "unknown"),
            f"the broker at {state.settings.bootstrap_servers} did not answer within {timeout:g}s",
        )
    topics: dict[str, str] = {}
    for name in wanted:
        found = metadata.topics.get(name)
        topics[name] = "ok" if found is not None and found.error is None else "missing"
    missing = [name for name, status in topics.items() if status != "ok"]
    if missing:
        return _not_ready(
            "ok",
            topics,
            f"topic(s) {', '.join(missing)} missing: create them with `logstream topics create`",
        )
    return JSONResponse({"status": "ready", "broker": "ok", "topics": topics})


def _not_ready(broker: str, topics: dict[str, str], message: str) -> JSONResponse:
    body: dict[str, Any] = {"status": "not_ready", "broker": broker, "topics": topics}
    body.update(error_body("not_ready", message))
    return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
