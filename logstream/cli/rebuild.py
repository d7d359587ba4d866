"""Zero-downtime rebuilds: `logstream rebuild VIEW`, `promote VIEW`, `drop VIEW --version`.

A rebuild is a new version of the view with its own group id and store (`VIEW@vN`), built
from the earliest offset while the current version keeps answering queries. `promote`
moves the query pointer atomically once the new version has caught up; the old version is
kept (and can still be consumed) until dropped.
"""

from __future__ import annotations

from typing import Annotated

import typer

from logstream.cli.consume import VersionOpt, run_view
from logstream.cli.output import fail, say
from logstream.registry import resolve_view
from logstream.runtime.plan import partition_lags
from logstream.settings import load_settings
from logstream.stores.factory import drop_store, open_view_store
from logstream.topics import resolve_topics
from logstream.versions import VersionRegistry

__all__ = ["drop", "promote", "rebuild"]

EXIT_REFUSED = 4


def rebuild(
    view: Annotated[str, typer.Argument(help="view name or module:attribute")],
    progress: Annotated[bool, typer.Option(help="progress bar on a terminal")] = True,
    resume: Annotated[
        bool, typer.Option("--resume", help="continue an unfinished rebuild of VIEW")
    ] = False,
) -> None:
    """Build a new version of VIEW from the earliest offset, beside the current one.

    A rebuild that did not catch up (a crash, a view-code error) is refused rather than
    left half built beside a new one: `--resume` continues it from its stored offsets, or
    `logstream drop VIEW --version vN` deletes it."""
    settings = load_settings()
    spec = resolve_view(view, settings)
    view = spec.name
    registry = VersionRegistry(settings)
    unfinished = registry.unfinished(view)
    if resume:
        if not unfinished:
            raise fail(f"{view} has no unfinished rebuild to resume", EXIT_REFUSED)
        version = unfinished[-1]
        say(f"resuming {view} {version} (group {VersionRegistry.namespace(view, version)})")
    elif unfinished:
        version = unfinished[-1]
        raise fail(
            f"{view} {version} is an unfinished rebuild (group "
            f"{VersionRegistry.namespace(view, version)}, never caught up): continue it with "
            f"`logstream rebuild {view} --resume`, or delete it with "
            f"`logstream drop {view} --version {version}` and rebuild",
            EXIT_REFUSED,
        )
    else:
        version = registry.start_building(view)
        say(
            f"building {view} {version} (group {VersionRegistry.namespace(view, version)}) "
            "from the earliest offset; the current version keeps answering"
        )
    namespace, result = run_view(settings, spec, version, until_caught_up=True, progress=progress)
    if not result.caught_up:  # stopped (a signal): it stays unfinished
        raise fail(
            f"{namespace}: stopped before catching up; continue with "
            f"`logstream rebuild {view} --resume`"
        )
    registry.finish_building(view, version)
    say(f"{namespace}: caught up after {result.events_applied} event(s)")
    say(f"keep it live: logstream consume {view} --version {version}")
    say(f"switch queries: logstream promote {view} --version {version}")


def promote(
    view: Annotated[str, typer.Argument(help="view name or module:attribute")],
    version: VersionOpt = None,
    max_lag: Annotated[int, typer.Option(help="most events the version may be behind")] = 0,
) -> None:
    """Switch queries of VIEW to VERSION (default: the newest) once it has caught up."""
    settings = load_settings()
    spec = resolve_view(view, settings)
    view = spec.name
    registry = VersionRegistry(settings)
    version = version or registry.versions(view)[-1]
    if version not in registry.versions(view):
        raise fail(f"{view} has no version {version}: {', '.join(registry.versions(view))}")
    namespace = VersionRegistry.namespace(view, version)
    store = open_view_store(settings.store_url, settings.data_dir, spec, namespace)
    try:
        positions = store.positions()
    finally:
        store.close()
    topics = resolve_topics(settings, spec.topics)
    lag = sum(p.lag for p in partition_lags(settings, topics, positions))
    if lag > max_lag:
        raise fail(
            f"{namespace} is {lag} event(s) behind the log (allowed {max_lag}): "
            f"run logstream consume {view} --version {version} and retry",
            EXIT_REFUSED,
        )
    registry.set_current(view, version)
    say(f"{view}: queries now read {version} ({namespace}), {lag} event(s) behind")


def drop(
    view: Annotated[str, typer.Argument(help="view name or module:attribute")],
    version: Annotated[str, typer.Option("--version", help="version to delete")],
) -> None:
    """Delete an old version's state; the current version cannot be dropped."""
    settings = load_settings()
    view = resolve_view(view, settings).name
    registry = VersionRegistry(settings)
    if registry.current(view) == version:
        raise fail(f"{view} {version} is current: promote another version first", EXIT_REFUSED)
    registry.forget(view, version)
    drop_store(settings.store_url, settings.data_dir, VersionRegistry.namespace(view, version))
    say(f"dropped {view} {version}")
