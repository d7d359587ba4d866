"""`logstream contract [--asyncapi]`: print the topic contract as JSON, without a server.

Why a command as well as `GET /v1/schemas` and `GET /asyncapi.json`: a build (code
generation, a schema registry sync, a docs site) can take the contract from the repository
and the settings alone, before anything runs. The output is the same document the API
serves for the same settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from logstream.cli.output import say
from logstream.contract import (
    asyncapi_document,
    deployed_topics,
    schemas_document,
    secure_protocol,
)
from logstream.schemas import SchemaCatalogue
from logstream.settings import load_settings

__all__ = ["contract"]


def contract(
    asyncapi: Annotated[
        bool,
        typer.Option(
            "--asyncapi", help="an AsyncAPI 3.0 document instead of the /v1/schemas document"
        ),
    ] = False,
    folder: Annotated[
        Path | None,
        typer.Option(
            "--dir", help="folder of .avsc files [LOGSTREAM_SCHEMA_DIR, else avro_schemas/]"
        ),
    ] = None,
) -> None:
    """Print the topic contract (event types, topics, keys, timestamps, every schema
    version and fingerprint) as JSON on stdout."""
    settings = load_settings()
    catalogue = SchemaCatalogue.load(folder if folder is not None else settings.resolved_schema_dir)
    topics = deployed_topics(settings, catalogue)
    if asyncapi:
        document = asyncapi_document(
            catalogue,
            topics,
            bootstrap_servers=settings.bootstrap_servers,
            secure=secure_protocol(settings),
        )
    else:
        document = schemas_document(catalogue, topics)
    say(json.dumps(document, indent=2, ensure_ascii=False))
