"""`logstream keys create|list|revoke`: the API keys of the HTTP API.

A key is printed once, by `create`; the key file keeps only its SHA-256 hash. Scopes:
`write:<event type>` (e.g. `write:likes`), `read:<view>` (e.g. `read:likes-by-url`),
`write:*`, `read:*`, `admin` (everything); a `write:`/`read:` name must be an existing event
type or view unless `--allow-unknown` is given. A running server picks changes up within a
second; once the key file exists, every route but /healthz needs a key.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from logstream.auth.keys import KeyFile
from logstream.auth.targets import unknown_targets
from logstream.cli.output import say
from logstream.errors import ConfigError
from logstream.settings import load_settings

__all__ = ["app"]

app = typer.Typer(help="API keys for the HTTP API (hashes only are stored).", no_args_is_help=True)


def _key_file() -> KeyFile:
    return KeyFile(load_settings().resolved_auth_keys_file)


def _rate(value: float | None, flag: str) -> float | None:
    if value is not None and value < 0:
        raise ConfigError(f"{flag} must be >= 0 (0: unlimited)")
    return value


def _check_targets(scopes: list[str]) -> None:
    """ConfigError naming scopes whose event type or view does not exist here."""
    from logstream.registry import registered_views
    from logstream.schemas import SchemaCatalogue

    settings = load_settings()
    catalogue = SchemaCatalogue.load(settings.resolved_schema_dir)
    event_paths = sorted(catalogue.topic_for(t) for t in catalogue.event_types())
    views = sorted(registered_views(settings))
    unknown = unknown_targets([s.strip() for s in scopes], event_paths, views)
    if unknown:
        raise ConfigError(
            f"unknown scope target(s) {', '.join(unknown)}: event types are "
            f"{', '.join(event_paths)}; views are {', '.join(views)} (or *); "
            "--allow-unknown for names that will exist later"
        )


@app.command()
def create(
    name: Annotated[str, typer.Option("--name", help="who or what uses the key")],
    scope: Annotated[
        list[str],
        typer.Option("--scope", help="write:<event type>, read:<view>, write:*, read:*, admin"),
    ],
    requests_per_s: Annotated[
        float | None,
        typer.Option("--requests-per-s", help="own request rate [LOGSTREAM_RATE_REQUESTS_PER_S]"),
    ] = None,
    events_per_s: Annotated[
        float | None,
        typer.Option("--events-per-s", help="own event rate [LOGSTREAM_RATE_EVENTS_PER_S]"),
    ] = None,
    allow_unknown: Annotated[
        bool,
        typer.Option(
            "--allow-unknown",
            help="accept write:/read: names that do not exist yet (a view or event type to come)",
        ),
    ] = False,
) -> None:
    """Create a key and print it (the only time it is shown)."""
    if not allow_unknown:
        _check_targets(scope)
    try:
        key, token = _key_file().create(
            name,
            scope,
            requests_per_s=_rate(requests_per_s, "--requests-per-s"),
            events_per_s=_rate(events_per_s, "--events-per-s"),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    say(token)
    typer.echo(f"created key {key.id} ({key.name}): {' '.join(key.scopes)}", err=True)


@app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Every key: id, name, scopes, created, revoked (never the key itself)."""
    keys = _key_file().load()
    if as_json:
        rows = [{k: v for k, v in key.to_json().items() if k != "hash"} for key in keys]
        say(json.dumps(rows, indent=2))
        return
    for key in keys:
        state = f"revoked {key.revoked_at}" if key.revoked_at else "active"
        say(f"{key.id}  {key.name}  {' '.join(key.scopes)}  created {key.created_at}  {state}")


@app.command()
def revoke(key_id: Annotated[str, typer.Argument(help="the id `keys list` shows")]) -> None:
    """Revoke a key: a running server refuses it within a second."""
    key = _key_file().revoke(key_id)
    say(f"revoked key {key.id} ({key.name}) at {key.revoked_at}")
