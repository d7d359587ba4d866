"""`logstream export TOPIC [--since] [--until] -o FILE.avro` and `logstream import FILE`.

Re-queue old data: export writes a topic's events with their original keys and event times
to an Avro object container file; import validates a whole file (export Avro, or NDJSON of
likes as posted to the HTTP API) and only then produces it, with the original keys and event
times. Likes are validated by ingest's own rules (`ingest_api.service.prepare_like`), so an
import accepts exactly what the API accepts, old event times included.

Exit codes: 0 done, 1 error (invalid records: nothing produced; failed deliveries: the
message says how many events are in the log), 2 usage.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from logstream.cli.output import say
from logstream.codec import Codec
from logstream.schemas import SchemaCatalogue
from logstream.settings import Settings, load_settings
from logstream.transfer import (
    Format,
    Prepared,
    RecordRejected,
    Rule,
    export_topic,
    import_file,
    parse_time_bound,
)
from logstream.transfer.importer import ndjson_event_id

__all__ = ["export_", "import_", "like_rule"]

LIKE = "like"


def export_(
    topic: Annotated[str, typer.Argument(help="topic to export, e.g. likes")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Avro file to write (e.g. likes.avro)")
    ],
    since: Annotated[
        str | None,
        typer.Option("--since", help="event time >= this: RFC 3339 or epoch ms (inclusive)"),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="event time < this: RFC 3339 or epoch ms (exclusive)"),
    ] = None,
) -> None:
    """Export TOPIC's events (with keys and event times) to an Avro object container file."""
    settings = load_settings()
    since_ms = None if since is None else parse_time_bound(since, "--since")
    until_ms = None if until is None else parse_time_bound(until, "--until")
    codec = Codec(SchemaCatalogue.load(settings.resolved_schema_dir))
    bar = _bar(f"export {topic}")
    try:
        result = export_topic(
            settings,
            codec,
            topic,
            output,
            since_ms=since_ms,
            until_ms=until_ms,
            on_total=lambda n: bar.reset(total=n),
            on_progress=bar.update,
        )
    finally:
        bar.close()
    for sample in result.undecodable_samples:
        print(f"warning: skipped {sample}", file=sys.stderr)
    say(
        f"exported {result.exported} event(s) of {topic} to {output}; "
        f"{result.out_of_range} outside the time range, {result.undecodable} undecodable "
        "(skipped)"
    )


def import_(
    file: Annotated[
        Path, typer.Argument(help="an export (.avro) or NDJSON file of likes", exists=True)
    ],
    topic: Annotated[
        str | None, typer.Option("--topic", help="produce here instead of the event's topic")
    ] = None,
    fmt: Annotated[
        Format | None,
        typer.Option("--format", help="file format; default: by extension (.avro, .ndjson)"),
    ] = None,
    allow_dead_letters: Annotated[
        bool,
        typer.Option(
            "--allow-dead-letters",
            help="import records that carry dead-letter headers (exported from a .dlq topic)",
        ),
    ] = False,
) -> None:
    """Validate every event of FILE, then produce them; key and time come from each event."""
    settings = load_settings()
    codec = Codec(SchemaCatalogue.load(settings.resolved_schema_dir))
    bar = _bar(f"import {file.name}")
    try:
        result = import_file(
            settings,
            codec,
            file,
            fmt=fmt,
            topic=topic,
            rules={LIKE: like_rule(settings, codec)},
            ndjson_event_type=LIKE,
            allow_dead_letters=allow_dead_letters,
            on_total=lambda n: bar.reset(total=n),
            on_progress=bar.update,
        )
    finally:
        bar.close()
    say(
        f"imported {result.produced} {result.event_type} event(s) from {file} "
        f"({result.format}) into {result.topic}"
    )


def like_rule(settings: Settings, codec: Codec) -> Rule:
    """Ingest's validation of a like, for imports: occurred_at is required, ids are stable."""
    from ingest_api.service import EventRejected, IngestState, prepare_like
    from logstream.producer import EventProducer

    # prepare_like only validates and encodes; the producer is never started.
    state = IngestState(
        settings, codec, EventProducer(settings), {LIKE: codec.catalogue.topic_for(LIKE)}
    )

    def rule(fields: dict[str, Any], now: int) -> Prepared:
        if fields.get("occurred_at") is None:
            raise RecordRejected(
                "occurred_at: is required for an import (RFC 3339 or epoch ms); "
                "the import time is not the event time"
            )
        if fields.get("event_id") is None:
            rest = {k: v for k, v in fields.items() if k != "event_id"}
            fields = {**rest, "event_id": ndjson_event_id(rest)}
        try:
            message, _ = prepare_like(state, fields, now=now)
        except EventRejected as exc:
            raise RecordRejected(
                "; ".join(f"{f.field}: {f.message}" if f.field else f.message for f in exc.fields)
            ) from None
        return Prepared(message.value, message.key, message.timestamp_ms)

    return rule


def _bar(desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=None, unit="ev", desc=desc, file=sys.stderr, disable=None, smoothing=0.1)
