"""Which views exist: the built-ins, entry points and `module:attribute` references.

A view is user code in the user's own package (docs/views.md). It is found by:
* the entry point group `logstream.views` of any installed distribution
  (`page-views = "mypkg.views:page_views"`), or
* a `module:attribute` reference: on the command line (`logstream consume
  mypkg.views:page_views`) or in `LOGSTREAM_VIEWS` (comma separated), which every process
  of the stack reads, so `make up`, the query API and every CLI command see the same views.
The attribute is a `View`, or a list/tuple of them. Nothing is imported at import time.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from importlib.metadata import entry_points

from logstream.errors import ConfigError, LogstreamError
from logstream.settings import Settings
from logstream.view import View, ViewDeclarationError

__all__ = [
    "ENTRY_POINT_GROUP",
    "UnknownViewError",
    "ViewRegistryError",
    "builtin_views",
    "load_reference",
    "registered_views",
    "resolve_view",
]

ENTRY_POINT_GROUP = "logstream.views"
class ViewRegistryError(ConfigError):
    """A view reference cannot be loaded, or two views share one name."""


class UnknownViewError(LogstreamError):
    """No registered view has that name."""


def load_reference(reference: str, origin: str = "view reference") -> list[View]:
    """The view(s) at `module:attribute`; one clear error for every way it can be wrong."""
    module_name, sep, attribute = reference.strip().partition(":")
    if not sep or not module_name or not attribute:
        raise ViewRegistryError(
            f"{origin} {reference!r} must be module:attribute, e.g. mypkg.views:page_views"
        )
    try:
        target: object = importlib.import_module(module_name)
    except ViewDeclarationError as exc:
        raise ViewRegistryError(f"{origin} {reference!r}: {exc}") from exc
    except ImportError as exc:
        raise ViewRegistryError(
            f"{origin} {reference!r}: cannot import {module_name!r}: {exc}"
        ) from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ViewRegistryError(
                f"{origin} {reference!r}: module {module_name!r} has no attribute {attribute!r}"
            ) from None
    return _as_views(target, f"{origin} {reference!r}")


def _as_views(target: object, where: str) -> list[View]:
    if isinstance(target, View):
        return [target]
    if isinstance(target, list | tuple) and target and all(isinstance(v, View) for v in target):
        return list(target)
    raise ViewRegistryError(
        f"{where} is a {type(target).__name__}, not a logstream View (or a list of Views)"
    )


def builtin_views() -> dict[str, View]:
    """The views logstream ships (`consumers.VIEWS`: declarations like any other)."""
    from consumers import VIEWS

    return dict(VIEWS)


def _entry_point_views() -> list[View]:
    found = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        where = f"entry point {ep.name!r} ({ep.value}) of group {ENTRY_POINT_GROUP}"
        try:
            target = ep.load()
        except ViewDeclarationError as exc:
            raise ViewRegistryError(f"{where}: {exc}") from exc
        except (ImportError, AttributeError) as exc:
            raise ViewRegistryError(f"{where} cannot be loaded: {exc}") from exc
        found += _as_views(target, where)
    return found


def _setting_references(settings: Settings | None) -> list[str]:
    raw = settings.views if settings is not None else ""
    return [item.strip() for item in raw.split(",") if item.strip()]


def registered_views(settings: Settings | None = None) -> dict[str, View]:
    """Every view by name: built-ins, entry points, then `LOGSTREAM_VIEWS` references."""
    views = builtin_views()
    candidates = _entry_point_views()
    for reference in _setting_references(settings):
        candidates += load_reference(reference, "LOGSTREAM_VIEWS reference")
    _add(views, candidates)
    return views


def _add(views: dict[str, View], candidates: Iterable[View]) -> None:
    for view in candidates:
        known = views.get(view.name)
        if known is None:
            views[view.name] = view
        elif known is not view:  # the same declaration found twice is one view
            raise ViewRegistryError(
                f"two views are named {view.name!r} ({_origin(known)} and {_origin(view)}); "
                "a view name is its consumer group: rename one"
            )


def _origin(view: View) -> str:
    module = getattr(view, "_declared_in", None) or type(view).__module__
    return f"declared in {module}"


def resolve_view(name_or_reference: str, settings: Settings | None = None) -> View:
    """A registered view by name, or the view at a `module:attribute` reference."""
    if ":" in name_or_reference:
        found = load_reference(name_or_reference)
        if len(found) != 1:
            raise ViewRegistryError(
                f"{name_or_reference!r} holds {len(found)} views: name one of "
                f"{', '.join(v.name for v in found)} after registering them"
            )
        view = found[0]
        known = registered_views(settings).get(view.name)
        if known is not None and known is not view:
            raise ViewRegistryError(
                f"{name_or_reference!r} declares view {view.name!r}, but a registered view "
                "already has that name: rename one"
            )
        return view
    views = registered_views(settings)
    try:
        return views[name_or_reference]
    except KeyError:
        raise UnknownViewError(
            f"unknown view {name_or_reference!r}; known views: {', '.join(views)} "
            "(a view of your own: module:attribute, or register it, see docs/views.md)"
        ) from None
