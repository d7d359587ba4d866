"""`logstream schemas check|list`: guard the topic contract before a schema reaches the log.

Exit codes: 0 ok, 1 problems found (one per line on stderr).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from logstream.cli.output import say
from logstream.schemas import CatalogueError, SchemaCatalogue, check_compatibility
from logstream.settings import load_settings

__all__ = ["app"]

app = typer.Typer(help="Check and list the Avro schemas of the event topics (avro_schemas/).")

DirOption = Annotated[
    Path | None,
    typer.Option("--dir", help="folder of .avsc files [LOGSTREAM_SCHEMA_DIR, else avro_schemas/]"),
]


def _load(folder: Path | None) -> SchemaCatalogue:
    """Load the catalogue or exit 1 with each problem on its own stderr line."""
    path = folder if folder is not None else load_settings().resolved_schema_dir
    try:
        return SchemaCatalogue.load(path)
    except CatalogueError as exc:
        _report(exc.problems)
        raise typer.Exit(1) from exc


def _report(problems: list[str]) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)


@app.command()
def check(folder: DirOption = None) -> None:
    """Every version must read data written with every older one (run it in CI)."""
    catalogue = _load(folder)
    problems = check_compatibility(catalogue)
    if problems:
        _report(problems)
        raise typer.Exit(1)
    say(f"ok: {len(catalogue.event_types())} event types, {len(catalogue)} versions")


@app.command("list")
def list_(folder: DirOption = None) -> None:
    """One line per version: event type, version, topic, fingerprint (hex), file."""
    catalogue = _load(folder)
    rows = [("EVENT TYPE", "VERSION", "TOPIC", "FINGERPRINT", "FILE")]
    rows += [
        (v.event_type, str(v.version), v.topic, v.fingerprint_hex, v.path.name) for v in catalogue
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        say("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]))
