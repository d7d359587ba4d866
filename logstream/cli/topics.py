"""`logstream topics create`: the event topics from the schema catalogue, idempotently."""

from __future__ import annotations

from typing import Annotated

import typer

from logstream.cli.output import say
from logstream.kafka.admin import create_topics, make_admin
from logstream.settings import load_settings
from logstream.topics import event_topic_specs, resolve_topics

__all__ = ["app"]

app = typer.Typer(help="Manage the event topics.")


@app.command()
def create(
    partitions: Annotated[int | None, typer.Option(help="partitions per topic [6]")] = None,
    replication_factor: Annotated[
        int | None, typer.Option(help="replicas [min(3, LOGSTREAM_BROKER_NODES)]")
    ] = None,
) -> None:
    """Create every event topic (retention forever, CreateTime) and its `.dlq` twin."""
    from logstream.schemas import SchemaCatalogue

    settings = load_settings()
    catalogue = SchemaCatalogue.load(settings.resolved_schema_dir)
    specs = event_topic_specs(
        settings,
        sorted(resolve_topics(settings, catalogue.topics())),
        partitions=partitions,
        replication_factor=replication_factor,
    )
    outcome = create_topics(make_admin(settings), specs)
    for name in sorted(outcome):
        say(f"{name}: {outcome[name]}")
