"""The HTTP face of logstream: `POST /v1/events/...` appends to the log, `GET /v1/views/...`
reads the views. Build it with `ingest_api.app.create_app()`; serve it with `logstream ingest`.
"""

from __future__ import annotations

__all__: list[str] = []
