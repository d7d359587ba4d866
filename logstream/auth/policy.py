"""When the HTTP API must require keys: always once a key file exists; a server bound to a
non-loopback address refuses to start without one (anyone who reaches the port could write
events that are kept forever). On loopback with no key file, auth is off and says so."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from logstream.errors import ConfigError

__all__ = ["check_bind", "is_loopback"]


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost`; any other name or address (0.0.0.0 too) is not."""
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(
    host: str, keys_file: Path, *, trust_network: bool = False, published_host: str | None = None
) -> bool:
    """True when auth is on; ConfigError when `host` is exposed and there is no key file
    (unless `trust_network`: something else already limits who connects, e.g. a container
    whose port is published on the host's loopback only). `published_host`: where that
    port is really reachable (docker-compose passes INGEST_PUBLISH_ADDR); trust_network is
    honoured only when it is loopback, so publishing the port wider requires keys."""
    if keys_file.exists():
        return True
    if is_loopback(host):
        return False
    if trust_network and published_host is not None and not is_loopback(published_host):
        raise ConfigError(
            f"refusing to serve without API keys: the port is published on {published_host} "
            f"(LOGSTREAM_INGEST_PUBLISHED_HOST), not on loopback. Create a key first: "
            f"`logstream keys create --name NAME --scope admin` (key file {keys_file})"
        )
    if trust_network:
        return False
    raise ConfigError(
        f"refusing to serve on {host} without API keys: anyone reaching the port could write "
        f"and read everything. Create one with `logstream keys create --name NAME --scope "
        f"admin` (key file {keys_file}), or bind to 127.0.0.1 (LOGSTREAM_INGEST_HOST)"
    )
