"""The `logstream` command. Exit codes: 0 ok, 1 error (one line on stderr), 2 usage,
3 not running / not ready (status checks), 4 refused (backfill while the group is active)."""

from __future__ import annotations

import sys

import typer

from logstream.cli import (
    backfill,
    broker,
    consume,
    contract,
    ingest,
    rebuild,
    schemas,
    stack,
    topics,
    transfer,
)
from logstream.errors import LogstreamError
from logstream.logs import configure_cli_logging

__all__ = ["app", "main"]

app = typer.Typer(
    help="logstream: an event log on Apache Kafka with replayable, exactly-once views.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _every_command() -> None:
    configure_cli_logging()  # LOGSTREAM_LOG_FORMAT for every command, in one place


app.add_typer(broker.app, name="broker")
app.add_typer(topics.app, name="topics")
app.add_typer(schemas.app, name="schemas")
app.add_typer(stack.app, name="stack")
app.command()(consume.consume)
app.command()(consume.views)
app.command()(consume.lag)
app.command()(rebuild.rebuild)
app.command()(rebuild.promote)
app.command()(rebuild.drop)
app.command()(ingest.ingest)
app.command()(backfill.backfill)
app.command("export")(transfer.export_)
app.command("import")(transfer.import_)
app.command()(contract.contract)


def main() -> None:
    try:
        app()
    except LogstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
