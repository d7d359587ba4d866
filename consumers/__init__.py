"""The views logstream ships: one consumer group and one store each."""

from __future__ import annotations

from consumers.likes_by_url import LikesByUrl
from consumers.likes_by_user import LikesByUser
from consumers.likes_by_window import LikesByWindow
from logstream.errors import LogstreamError
from logstream.view import View

__all__ = ["VIEWS", "get_view"]

VIEWS: dict[str, View] = {
    view.name: view for view in (LikesByUrl(), LikesByUser(), LikesByWindow())
}


def get_view(name: str) -> View:
    """The view called `name`, or an error listing the known ones."""
    try:
        return VIEWS[name]
    except KeyError:
        raise LogstreamError(f"unknown view {name!r}; known views: {', '.join(VIEWS)}") from None
