"""`logstream consume VIEW [--until-caught-up]` and `logstream views`."""

from __future__ import annotations

import logging
import signal
import sys
from typing import Annotated

import typer

from logstream.cli.output import say
from logstream.codec import Codec
from logstream.runtime import ViewRunner
from logstream.runtime.plan import partition_lags
from logstream.schemas import SchemaCatalogue
from logstream.settings import load_settings
from logstream.stores.factory import open_store

__all__ = ["consume", "views"]


def consume(
    view: Annotated[str, typer.Argument(help="view name = consumer group id")],
    until_caught_up: Annotated[
        bool,
        typer.Option("--until-caught-up", help="exit 0 once the log end seen at start is applied"),
    ] = False,
    progress: Annotated[
        bool, typer.Option(help="show a progress bar (with --until-caught-up)")
    ] = True,
) -> None:
    """Build VIEW from the log, exactly once; runs until SIGTERM/Ctrl-C unless --until-caught-up."""
    from consumers import get_view

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = load_settings()
    spec = get_view(view)
    catalogue = SchemaCatalogue.load(settings.resolved_schema_dir)
    store = open_store(settings.store_url, settings.data_dir, spec.namespace(), spec.totals_series)
    bar = None
    if until_caught_up and progress:
        from tqdm import tqdm

        total = sum(lag.lag for lag in partition_lags(settings, spec.topics, store.positions()))
        bar = tqdm(
            total=total,
            unit="ev",
            desc=f"{view} replay",
            file=sys.stderr,
            disable=None,
            smoothing=0.1,
        )
    runner = ViewRunner(
        settings,
        spec,
        store,
        Codec(catalogue),
        until_caught_up=until_caught_up,
        on_progress=bar.update if bar is not None else None,
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: runner.stop())
    try:
        result = runner.run()
    finally:
        if bar is not None:
            bar.close()
        store.close()
    say(
        f"{view}: applied {result.events_applied} event(s), {result.dead_letters} dead letter(s), "
        f"{result.flushes} flush(es)" + (", caught up" if result.caught_up else "")
    )


def views() -> None:
    """List each view: group, stored offsets, lag and dead-letter count."""
    from consumers import VIEWS

    settings = load_settings()
    for name, spec in VIEWS.items():
        store = open_store(
            settings.store_url, settings.data_dir, spec.namespace(), spec.totals_series
        )
        try:
            stats = store.stats()
        finally:
            store.close()
        lags = partition_lags(settings, spec.topics, stats.positions)
        total_lag = sum(lag.lag for lag in lags)
        say(
            f"{name}  group={name}  lag={total_lag}  dlq={stats.dlq_count}  "
            f"newest_event_ms={stats.max_event_ms}"
        )
        for lag in lags:
            stored = "-" if lag.stored_offset is None else lag.stored_offset
            say(f"  {lag.topic}[{lag.partition}] stored={stored} end={lag.log_end} lag={lag.lag}")
        for topic, partition, start, end in stats.skipped:
            say(f"  skipped {topic}[{partition}] offsets {start}..{end - 1}")
