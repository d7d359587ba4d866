"""One module per resource, each with its own `APIRouter`."""

from __future__ import annotations

__all__: list[str] = []
