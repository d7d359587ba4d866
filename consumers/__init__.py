"""The views logstream ships: one consumer group and one store each.

Kept for imports that predate `logstream.registry`: `VIEWS` holds the built-in views only;
`get_view` resolves any registered view (or a `module:attribute` reference).
"""

from __future__ import annotations

# Bound under other names: `consumers.likes_by_url` stays the module.
from consumers.likes_by_url import likes_by_url as _by_url
from consumers.likes_by_user import likes_by_user as _by_user
from consumers.likes_by_window import likes_by_window as _by_window
from logstream.view import View

__all__ = ["VIEWS", "get_view"]

VIEWS: dict[str, View] = {view.name: view for view in (_by_url, _by_user, _by_window)}


def get_view(name: str) -> View:
    """The view called `name` (or at `module:attribute`), or an error listing the known ones."""
    from logstream.registry import resolve_view
    from logstream.settings import load_settings

    return resolve_view(name, load_settings())
