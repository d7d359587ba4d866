"""Which scope a request needs, and whether a key's scopes grant it (pure: no I/O).

Scopes: `write:<event type>` (POST /v1/events/<event type>...), `read:<view>`
(GET /v1/views/<view>...), `admin` (grants every scope). `write:*` and `read:*` grant
every event type or view. The event type is the name in the path (`likes`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ADMIN",
    "AUTHENTICATED",
    "PUBLIC_PATHS",
    "Requirement",
    "grants",
    "parse_scope",
    "required_scope",
]

ADMIN = "admin"
# Any valid key, whatever its scopes: documents, contract, readiness, unknown paths.
AUTHENTICATED = ""
# The dashboard's page and assets hold no data (the page asks for a key for its fetches).
PUBLIC_PATHS = frozenset({"/healthz", "/dashboard"})
_PUBLIC_PREFIXES = ("/dashboard/",)
_ADMIN_PREFIXES = ("/metrics", "/v1/admin")
_SCOPE = re.compile(r"^(admin|(write|read):([A-Za-z0-9._-]{1,100}|\*))$")


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a request needs: nothing (`None` from `required_scope`), a valid key
    (`scope == AUTHENTICATED`) or a key granting `scope`."""

    scope: str


def parse_scope(text: str) -> str:
    """The scope, checked against the grammar; ValueError names what is wrong."""
    scope = text.strip()
    if not _SCOPE.match(scope):
        raise ValueError(
            f"invalid scope {text!r}: use write:<event type>, read:<view>, write:*, read:* or admin"
        )
    return scope


def required_scope(path: str) -> Requirement | None:
    """The scope a request path needs; None for the public `/healthz` and the dashboard's
    static page and assets (`/dashboard`, `/dashboard/...`)."""
    if path in PUBLIC_PATHS or path.startswith(_PUBLIC_PREFIXES):
        return None
    for kind, prefix in (("write", "/v1/events/"), ("read", "/v1/views/")):
        if path.startswith(prefix):
            name = path[len(prefix) :].split("/", 1)[0]
            return Requirement(f"{kind}:{name or '*'}")
    if path in ("/v1/views", "/v1/events"):
        return Requirement(f"{'read' if path.endswith('views') else 'write'}:*")
    if path.startswith(_ADMIN_PREFIXES):
        return Requirement(ADMIN)
    return Requirement(AUTHENTICATED)


def grants(granted: Iterable[str], needed: str) -> bool:
    """Whether a key holding `granted` may do what `needed` names."""
    if needed == AUTHENTICATED:
        return True
    held = set(granted)
    if ADMIN in held or needed in held:
        return True
    kind, _, _name = needed.partition(":")
    return kind in ("write", "read") and f"{kind}:*" in held
