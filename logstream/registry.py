"""Which views exist: the built-ins, entry points and `module:attribute` references.

A view is user code in the user's own package (docs/views.md). It is found by:
* the entry point group `logstream.views` of any installed distribution
  (`page-views = "mypkg.views:page_views"`), or
* a `module:attribute` reference: on the command line (`logstream consume
  mypkg.views:page_views`) or in `LOGSTREAM_VIEWS` (comma separated), which every process
  of the stack reads, so `make up`, the query API and every CLI command see the same views.
The attribute is a `View`, or a list/tuple of them. Nothing is imported at import time.

One broken registration (a module that raises on import, a name whose store another view
already has) does not take the others down: it is logged, listed as broken (`logstream
views`, `GET /v1/views`), and only a command that names it fails, with its error.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from logstream.errors import ConfigError, LogstreamError
from logstream.settings import Settings
from logstream.stores.base import safe_name
from logstream.view import View, ViewDeclarationError

__all__ = [
    "ENTRY_POINT_GROUP",
    "BrokenView",
    "Registry",
    "UnknownViewError",
    "ViewRegistryError",
    "builtin_views",
    "load_reference",
    "registered_views",
    "resolve_view",
    "view_registry",
]

log = logging.getLogger("logstream.registry")

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
    except ViewDeclarationError as exc:  # its message names the view and the argument
        raise ViewRegistryError(f"{origin} {reference!r}: {_one_line(exc)}") from exc
    except ImportError as exc:
        raise ViewRegistryError(
            f"{origin} {reference!r}: cannot import {module_name!r}: {_one_line(exc)}"
        ) from exc
    except Exception as exc:  # user code: any error at import names the reference
        raise ViewRegistryError(
            f"{origin} {reference!r}: importing {module_name!r} raised "
            f"{type(exc).__name__}: {_one_line(exc)}"
        ) from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ViewRegistryError(
                f"{origin} {reference!r}: module {module_name!r} has no attribute {attribute!r}"
            ) from None
        except Exception as exc:  # a module __getattr__ of the user's
            raise ViewRegistryError(
                f"{origin} {reference!r}: reading {attribute!r} raised "
                f"{type(exc).__name__}: {_one_line(exc)}"
            ) from exc
    return _as_views(target, f"{origin} {reference!r}")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


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


@dataclass(frozen=True)
class BrokenView:
    """A registration that cannot be used. `names`: what a command may call it by (an entry
    point's name, a view's name), so that naming it fails with `error`, not "unknown"."""

    origin: str
    error: str
    names: tuple[str, ...] = ()


@dataclass
class Registry:
    """The usable views by name, and the registrations that are broken."""

    views: dict[str, View]
    broken: list[BrokenView] = field(default_factory=list)

    def broken_named(self, name: str) -> BrokenView | None:
        return next((b for b in self.broken if name in b.names), None)


def _entry_point_candidates() -> Iterable[tuple[str, tuple[str, ...], list[View] | str]]:
    """(origin, names, views or the error) of every entry point of the group."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        where = f"entry point {ep.name!r} ({ep.value}) of group {ENTRY_POINT_GROUP}"
        try:
            target = ep.load()
            yield where, (ep.name,), _as_views(target, where)
        except ViewRegistryError as exc:
            yield where, (ep.name,), str(exc)
        except Exception as exc:  # user code: any error while loading names the entry point
            yield (
                where,
                (ep.name,),
                (f"{where} cannot be loaded: {type(exc).__name__}: {_one_line(exc)}"),
            )


def _reference_candidates(
    settings: Settings | None,
) -> Iterable[tuple[str, tuple[str, ...], list[View] | str]]:
    for reference in _setting_references(settings):
        origin = f"LOGSTREAM_VIEWS reference {reference!r}"
        try:
            yield origin, (reference,), load_reference(reference, "LOGSTREAM_VIEWS reference")
        except ViewRegistryError as exc:
            yield origin, (reference,), str(exc)


def _setting_references(settings: Settings | None) -> list[str]:
    raw = settings.views if settings is not None else ""
    return [item.strip() for item in raw.split(",") if item.strip()]


def view_registry(settings: Settings | None = None) -> Registry:
    """Built-ins, entry points, then `LOGSTREAM_VIEWS` references; the first registered of
    two views with one store name keeps it, the other is broken (so a built-in always runs)."""
    registry = Registry(builtin_views())
    stores = {safe_name(v.name): v for v in registry.views.values()}
    for origin, names, found in [*_entry_point_candidates(), *_reference_candidates(settings)]:
        if isinstance(found, str):
            registry.broken.append(BrokenView(origin, found, names))
            continue
        for view in found:
            clash = _clash(stores, view)
            if clash is not None:
                registry.broken.append(BrokenView(origin, clash, (*names, view.name)))
            elif view.name not in registry.views:
                registry.views[view.name] = view
                stores[safe_name(view.name)] = view
    return registry


def _clash(stores: dict[str, View], view: View) -> str | None:
    """Why `view` cannot be registered beside `stores` (another view, one store name)."""
    known = stores.get(safe_name(view.name))
    if known is None or known is view:  # the same declaration found twice is one view
        return None
    same = "are named" if known.name == view.name else "share the store name"
    return (
        f"two views {same} {safe_name(view.name)!r}: {known.name!r} ({_origin(known)}) and "
        f"{view.name!r} ({_origin(view)}); a view name is its consumer group and store "
        f"(names are compared lowercased, with runs of characters other than a-z, 0-9 "
        f"as '_'): rename one"
    )


def registered_views(settings: Settings | None = None) -> dict[str, View]:
    """Every usable view by name; a broken registration is logged and left out."""
    registry = view_registry(settings)
    for broken in registry.broken:
        log.warning("view registration skipped: %s", broken.error)
    return registry.views


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
        registry = view_registry(settings)
        clash = _clash({safe_name(v.name): v for v in registry.views.values()}, view)
        if clash is not None:
            raise ViewRegistryError(f"{name_or_reference!r}: {clash}")
        return view
    registry = view_registry(settings)
    named = registry.views.get(name_or_reference)
    if named is not None:
        return named
    broken = registry.broken_named(name_or_reference)
    if broken is not None:
        raise ViewRegistryError(broken.error)
    also = f"; broken registrations: {len(registry.broken)}" if registry.broken else ""
    raise UnknownViewError(
        f"unknown view {name_or_reference!r}; known views: {', '.join(registry.views)}{also} "
        "(a view of your own: module:attribute, or register it, see docs/views.md)"
    )
