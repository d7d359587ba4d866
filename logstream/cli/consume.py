"""`logstream consume VIEW [--until-caught-up]` and `logstream views`."""

from __future__ import annotations

import signal
import sys
from typing import Annotated

import typer

from logstream.cli.output import say
from logstream.codec import Codec
from logstream.gc_tuning import freeze_startup_heap
from logstream.logs import configure_logging, set_log_context
from logstream.metrics.hooks import ConsumerHooks
from logstream.registry import registered_views, resolve_view, view_registry
from logstream.runtime import RunResult, ViewRunner
from logstream.runtime.bounded import call_bounded
from logstream.runtime.plan import partition_lags
from logstream.schemas import SchemaCatalogue
from logstream.settings import Settings, load_settings
from logstream.stores.factory import open_view_store
from logstream.topics import resolve_topics
from logstream.versions import VersionRegistry
from logstream.view import View

__all__ = ["consume", "lag", "run_view", "views"]

VersionOpt = Annotated[
    str | None, typer.Option("--version", help="view version (default: the current one)")
]


def run_view(
    settings: Settings,
    view_name: str | View,
    version: str | None,
    *,
    until_caught_up: bool,
    progress: bool,
    metrics_port: int | None = None,
) -> tuple[str, RunResult]:
    """Consume one version of a view as its own group (`name` or `name@vN`); `view_name`
    may also be a `module:attribute` reference, or the view itself. With `metrics_port`
    (and metrics on), serve its Prometheus metrics there."""
    spec = view_name if isinstance(view_name, View) else resolve_view(view_name, settings)
    view_name = spec.name
    registry = VersionRegistry(settings)
    version = version or registry.current(view_name)
    if version not in registry.versions(view_name):
        raise typer.BadParameter(f"{view_name} has no version {version}", param_hint="--version")
    namespace = VersionRegistry.namespace(view_name, version)
    catalogue = SchemaCatalogue.load(settings.resolved_schema_dir)
    store = open_view_store(settings.store_url, settings.data_dir, spec, namespace)
    bar = None
    if until_caught_up and progress:
        from tqdm import tqdm

        total = sum(
            lag.lag
            for lag in partition_lags(
                settings, resolve_topics(settings, spec.topics), store.positions()
            )
        )
        bar = tqdm(
            total=total,
            unit="ev",
            desc=f"{namespace}",
            file=sys.stderr,
            disable=None,
            smoothing=0.1,
            dynamic_ncols=True,
        )
    set_log_context(view=namespace)
    hooks = ConsumerHooks(settings, spec, version, metrics_port)
    runner = ViewRunner(
        settings,
        spec,
        store,
        Codec(catalogue),
        group_id=namespace,
        until_caught_up=until_caught_up,
        on_progress=hooks.on_progress(bar.update if bar is not None else None),
        on_commit=hooks.on_commit,
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: runner.stop())
    hooks.start(lambda: runner.result)
    freeze_startup_heap()  # a long-lived process: keep the collector off the start-up heap
    try:
        result = runner.run()
    finally:
        hooks.stop()
        if bar is not None:
            bar.close()
        # A flush given up at shutdown may still hold the store (e.g. a busy SQLite file);
        # the process must exit anyway, and the store is crash-safe.
        call_bounded(store.close, 2.0, f"{namespace}: closing the view store")
    return namespace, result


def consume(
    view: Annotated[
        str, typer.Argument(help="view name (= consumer group id) or module:attribute")
    ],
    until_caught_up: Annotated[
        bool,
        typer.Option("--until-caught-up", help="exit 0 once the log end seen at start is applied"),
    ] = False,
    progress: Annotated[
        bool, typer.Option(help="progress bar (with --until-caught-up, on a terminal)")
    ] = True,
    version: VersionOpt = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=1,
            max=65535,
            help="serve Prometheus metrics on this port (LOGSTREAM_METRICS_HOST) at /metrics",
        ),
    ] = None,
) -> None:
    """Build VIEW from the log, exactly once; runs until SIGTERM/Ctrl-C unless --until-caught-up."""
    settings = load_settings()
    configure_logging(settings.log_format)
    namespace, result = run_view(
        settings,
        view,
        version,
        until_caught_up=until_caught_up,
        progress=progress,
        metrics_port=metrics_port,
    )
    say(
        f"{namespace}: applied {result.events_applied} event(s), "
        f"{result.dead_letters} dead letter(s), {result.flushes} flush(es)"
        + (", caught up" if result.caught_up else "")
    )


def views() -> None:
    """List each view version: group, stored offsets, lag, dead letters, skipped ranges;
    then each broken registration with its error."""
    settings = load_settings()
    registry = VersionRegistry(settings)
    found = view_registry(settings)
    for name, spec in found.views.items():
        current = registry.current(name)
        for version in registry.versions(name):
            namespace = VersionRegistry.namespace(name, version)
            store = open_view_store(settings.store_url, settings.data_dir, spec, namespace)
            try:
                stats = store.stats()
            finally:
                store.close()
            lags = partition_lags(settings, resolve_topics(settings, spec.topics), stats.positions)
            marker = " (current)" if version == current else ""
            say(
                f"{name} {version}{marker}  group={namespace}  "
                f"lag={sum(lag.lag for lag in lags)}  dlq={stats.dlq_count}  "
                f"newest_event_ms={stats.max_event_ms}"
            )
            for lag in lags:
                stored = "-" if lag.stored_offset is None else lag.stored_offset
                say(
                    f"  {lag.topic}[{lag.partition}] stored={stored} end={lag.log_end} "
                    f"lag={lag.lag}"
                )
            for topic, partition, start, end in stats.skipped:
                say(f"  skipped {topic}[{partition}] offsets {start}..{end - 1}")
    for broken in found.broken:
        say(f"broken: {broken.error}")


def lag(
    view: Annotated[
        str | None, typer.Argument(help="one view or module:attribute (default: all)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Lag per group and partition of the current view versions (what a queue backs up)."""
    import json

    settings = load_settings()
    registry = VersionRegistry(settings)
    specs = [resolve_view(view, settings)] if view else list(registered_views(settings).values())
    rows = []
    for spec in specs:
        namespace = VersionRegistry.namespace(spec.name, registry.current(spec.name))
        store = open_view_store(settings.store_url, settings.data_dir, spec, namespace)
        try:
            positions = store.positions()
        finally:
            store.close()
        for item in partition_lags(settings, resolve_topics(settings, spec.topics), positions):
            rows.append(
                {
                    "group": namespace,
                    "topic": item.topic,
                    "partition": item.partition,
                    "stored_offset": item.stored_offset,
                    "log_end": item.log_end,
                    "lag": item.lag,
                }
            )
    if as_json:
        say(json.dumps(rows, indent=2))
        return
    say(f"{'GROUP':<24}{'TOPIC':<20}{'PARTITION':>10}{'STORED':>10}{'END':>10}{'LAG':>10}")
    for row in rows:
        stored = "-" if row["stored_offset"] is None else row["stored_offset"]
        say(
            f"{row['group']:<24}{row['topic']:<20}{row['partition']:>10}{stored:>10}"
            f"{row['log_end']:>10}{row['lag']:>10}"
        )
