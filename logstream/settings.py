"""Settings from `LOGSTREAM_*` environment variables, read only when asked for (never at import)."""

from __future__ import annotations

import contextlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from logstream.errors import ConfigError
from logstream.redact import (
    is_secret_key,
    redact_kafka,
    redact_url,
    register_secrets,
    url_password,
)

__all__ = ["Settings", "load_settings"]

ENV_PREFIX = "LOGSTREAM_"
# Variables with the prefix that are read elsewhere (tests, tools), not by Settings.
_FOREIGN_PREFIXES = ("LOGSTREAM_TEST_", "LOGSTREAM_BENCH_", "LOGSTREAM_UPDATE_SCREENSHOT")


class Settings(BaseSettings):
    """Every knob of logstream; each field `x` is set by the variable `LOGSTREAM_X`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    # Kafka connection
    bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: str | None = None
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: str | None = None
    kafka_extra: dict[str, str] = Field(
        default_factory=dict,
        description="More librdkafka properties as a JSON object, passed through unchanged.",
    )

    # Local broker (`logstream broker ...`)
    data_dir: Path = Path(".logstream")
    kafka_version: str = "4.1.1"
    kafka_cache_dir: Path = Path.home() / ".cache" / "logstream" / "kafka"
    broker_port: int = 9092
    controller_port: int = 9093
    broker_heap: str = "512m"
    broker_nodes: int = Field(
        default=1,
        ge=1,
        description="Nodes of a new local cluster (`make up`, `broker start`); a folder that "
        "already holds a cluster keeps its own node count.",
    )

    # Topics
    topic_prefix: str = Field(
        default="",
        description="Prepended to every event topic (e.g. `staging.`): several environments "
        "or test runs can share one cluster.",
    )
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication_factor: int | None = Field(
        default=None,
        ge=1,
        description="Replicas of each event topic; unset: min(3, LOGSTREAM_BROKER_NODES).",
    )
    schema_dir: Path | None = Field(
        default=None,
        description="The folder of `.avsc` files (one per event type and version), or several "
        "separated by `:` like PATH; unset: the repository's `avro_schemas/`.",
    )

    # Views of your own, besides the built-ins and the `logstream.views` entry points.
    views: str = Field(
        default="",
        description="Comma-separated `module:attribute` references to View declarations "
        "(docs/views.md); every process of the stack reads it.",
    )

    # View stores: None means one SQLite file per view under data_dir/views.
    store_url: str | None = None

    # Ingest API
    ingest_host: str = "127.0.0.1"
    ingest_port: int = 8000
    ingest_workers: int = Field(default=1, ge=1)
    ingest_max_batch_events: int = Field(default=10_000, ge=1)
    ingest_max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    ingest_ack_timeout_s: float = Field(default=5.0, gt=0)
    ingest_max_future_ms: int = Field(default=60 * 60 * 1000, ge=0)
    ingest_queue_max_messages: int = Field(default=200_000, ge=1)
    ingest_max_header_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Request line + headers of one request, at most (else 431).",
    )
    ingest_max_headers: int = Field(default=100, ge=8, description="Header fields, at most.")
    ingest_header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A request's headers must arrive within this (else 408, closed).",
    )
    ingest_body_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="A request's body must arrive within this of its headers (else 408).",
    )
    ingest_max_connections: int = Field(
        default=1024,
        ge=1,
        description="Open connections per worker; more get 503 + Retry-After and are closed.",
    )
    ingest_max_connections_per_client: int = Field(
        default=256,
        ge=1,
        description="Open connections per worker from one peer address (loopback too); more "
        "get 503 + Retry-After: one client cannot hold the whole connection cap.",
    )
    rate_requests_per_s: float = Field(
        default=2_000,
        ge=0,
        description="Requests per second per API key (429 + Retry-After above); 0: unlimited. "
        "A key's own limit (`keys create --requests-per-s`) overrides it.",
    )
    rate_events_per_s: float = Field(
        default=100_000,
        ge=0,
        description="Events per second per API key; 0: unlimited; per key: --events-per-s.",
    )
    rate_burst_s: float = Field(
        default=2.0,
        gt=0,
        description="A key may send this many seconds' worth of its rate at once.",
    )
    ingest_trust_network: bool = Field(
        default=False,
        description="Serve without API keys on a non-loopback address while no key file "
        "exists: only where something else limits who connects (docker-compose: the port "
        "is published on the host's 127.0.0.1).",
    )
    ingest_published_host: str | None = Field(
        default=None,
        description="Where the ingest port is really published (docker-compose sets it from "
        "INGEST_PUBLISH_ADDR); LOGSTREAM_INGEST_TRUST_NETWORK counts only while it is loopback.",
    )
    auth_keys_file: Path | None = Field(
        default=None,
        description="The API key file (`logstream keys ...`); unset: <data_dir>/auth/keys.json.",
    )

    # Consumer runtime
    consume_batch_size: int = Field(default=5_000, ge=1)
    flush_interval_s: float = Field(default=1.0, gt=0)
    flush_max_keys: int = Field(default=200_000, ge=1)
    consumer_session_timeout_ms: int = Field(default=10_000, ge=6_000)
    consumer_instance_id: str | None = Field(
        default=None,
        description="Static group membership (Kafka group.instance.id): a restarted consumer "
        "with the same id takes its partitions back at once, without waiting for the session "
        "timeout. Unique per process.",
    )
    consumer_stall_timeout_s: float = Field(
        default=60.0,
        ge=0,
        description="A consumer exits non-zero (for its supervisor to restart it) when it "
        "can make no progress for this long: its consume loop made no round, or one store "
        "commit attempt has not returned. A broker outage or a full disk is not a stall: the "
        "consumer rides those out. Keep it above the store's busy timeout (30 s); 0 disables.",
    )
    read_wait_max_s: float = Field(default=10.0, ge=0)
    read_waiters_max: int = Field(
        default=256,
        ge=0,
        description="Per server process: how many reads may wait for `wait_for` at once (a "
        "waiter holds no thread, only a coroutine); the next one gets 503 + Retry-After.",
    )
    dedupe_horizon_events: int = Field(
        default=100_000,
        ge=0,
        description="Per partition: an event whose event_id appeared within this many "
        "preceding offsets of the same partition is a retry and is not applied by any view. "
        "Part of every view's definition (rebuild after changing it); 0 turns it off.",
    )

    # Operations (README "Operations")
    metrics: bool = Field(
        default=True,
        description="Prometheus metrics: `/metrics` on the server, hooks in the consumers; "
        "off, neither is served nor counted (to measure what they cost).",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Bind address of each consumer's metrics port (`consume --metrics-port`).",
    )
    consumer_metrics_port: int = Field(
        default=9101,
        ge=0,
        le=65535,
        description="`logstream stack` serves the metrics of the i-th view's consumer (in "
        "the order `logstream views` lists them) on this port + i; 0: no metrics ports.",
    )
    lag_sample_interval_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often the processes serving view lag sample each partition's log "
        "end: the resolution of `logstream_view_lag_seconds`.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`json`: one JSON object per log line, for every process.",
    )

    def model_post_init(self, context: Any, /) -> None:
        """Every secret these settings hold is masked in all output from now on."""
        register_secrets(self.secret_values())

    def secret_values(self) -> list[str]:
        """The passwords inside: SASL, the store URL's (raw and decoded), secret extras."""
        values = [
            self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None,
            url_password(self.store_url),
        ]
        if self.store_url:
            with contextlib.suppress(ValueError):
                values.append(urlsplit(self.store_url).password)
        values += [v for k, v in self.kafka_extra.items() if is_secret_key(k)]
        return [v for v in values if v]

    def __repr_args__(self) -> Any:
        """The repr and str of settings never show a password (store URL, Kafka extras)."""
        for name, value in super().__repr_args__():
            if name == "store_url":
                yield name, redact_url(value)
            elif name == "kafka_extra":
                yield name, redact_kafka(value)
            else:
                yield name, value

    def replication_for(self, nodes: int | None = None) -> int:
        """Replicas for new topics: the setting, else min(3, nodes of the cluster)."""
        if self.topic_replication_factor is not None:
            return self.topic_replication_factor
        return min(3, nodes or self.broker_nodes)

    @property
    def resolved_auth_keys_file(self) -> Path:
        """Where API keys (their hashes) are kept."""
        return self.auth_keys_file or self.data_dir / "auth" / "keys.json"

    @property
    def resolved_schema_dir(self) -> Path:
        """The `.avsc` folder: the setting, else the repo's, else the copy inside the wheel."""
        if self.schema_dir is not None:
            return self.schema_dir
        package_dir = Path(__file__).resolve().parent
        for candidate in (package_dir.parent / "avro_schemas", package_dir / "_avro_schemas"):
            if candidate.is_dir():
                return candidate
        raise ConfigError("no avro_schemas folder found: set LOGSTREAM_SCHEMA_DIR")

    def kafka_common(self) -> dict[str, Any]:
        """librdkafka properties shared by producers, consumers and admin clients."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers}
        optional = {
            "security.protocol": self.kafka_security_protocol,
            "sasl.mechanism": self.kafka_sasl_mechanism,
            "sasl.username": self.kafka_sasl_username,
            "sasl.password": (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            ),
            "ssl.ca.location": self.kafka_ssl_ca_location,
        }
        conf.update({k: v for k, v in optional.items() if v is not None})
        conf.update(self.kafka_extra)
        return conf


def _unknown_variables(environ: dict[str, str]) -> list[str]:
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    return sorted(
        key
        for key in environ
        if key.startswith(ENV_PREFIX) and key not in known and not key.startswith(_FOREIGN_PREFIXES)
    )


SETTINGS_FILE = "logstream.env"


def settings_file(overrides: dict[str, Any]) -> Path | None:
    """`<data dir>/logstream.env` if it exists: settings written for this folder (by
    `broker start --secure`); environment variables and overrides win over it."""
    data_dir = overrides.get("data_dir") or os.environ.get(ENV_PREFIX + "DATA_DIR") or ".logstream"
    path = Path(data_dir) / SETTINGS_FILE
    if not path.is_file():
        return None
    _check_settings_file_is_ours(path)
    return path


def _check_settings_file_is_ours(path: Path) -> None:
    """The file can point clients at another broker or store: another user who can write
    it (its owner, or anyone when it is group/world-writable) could redirect every command,
    so such a file is refused rather than read."""
    st = path.stat()
    if st.st_uid != os.getuid():
        raise ConfigError(
            f"refusing {path}: it is owned by uid {st.st_uid}, not by you (uid {os.getuid()})"
        )
    if st.st_mode & 0o022:
        raise ConfigError(
            f"refusing {path}: group or others may write it (mode {st.st_mode & 0o777:o}); "
            f"run `chmod 600 {path}`"
        )


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, `<data dir>/logstream.env` and overrides; a
    typo'd variable is an error."""
    unknown = _unknown_variables(dict(os.environ))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}: see README, Configuration")
    try:
        return Settings(_env_file=settings_file(overrides), **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"setting {ENV_PREFIX}{field.upper()}: {first['msg']}") from exc


@lru_cache(maxsize=1)
def cached_settings() -> Settings:
    """Process-wide settings for entry points (CLI, app factory); tests build their own."""
    return load_settings()
