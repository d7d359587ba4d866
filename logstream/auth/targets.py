"""Whether a key's scopes name things that exist: a `write:<x>` must name an event type's
path segment (its topic, e.g. `likes` of `/v1/events/likes`) and a `read:<x>` a registered
view; otherwise a typo (`write:like`) makes a key that silently grants nothing (pure)."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["unknown_targets"]


def unknown_targets(
    scopes: Iterable[str], event_paths: Iterable[str], views: Iterable[str]
) -> list[str]:
    """The scopes among `scopes` whose name is neither `*` nor a known one."""
    known = {"write": set(event_paths), "read": set(views)}
    unknown = []
    for scope in scopes:
        kind, _, name = scope.partition(":")
        if kind in known and name != "*" and name not in known[kind]:
            unknown.append(scope)
    return unknown
