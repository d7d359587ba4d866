"""Refused credentials are one line within seconds, not a hang.

librdkafka treats a failed SASL authentication or TLS handshake as a transient broker error:
it logs and retries forever, and a command waits out its whole timeout before failing with
"transport failure". Before a command that talks to Kafka runs, `check_kafka_access` asks
for metadata with a short deadline and an error callback; an authentication or TLS failure
becomes a ConfigError naming the settings to fix. Anything else (a broker that is down) is
left to the command, which has its own rules for riding out outages: the check gives up
as soon as the broker refuses the connection (down), so a stopped broker adds well under a
second to a command rather than the whole deadline. Only secured connections (SASL or SSL)
are checked: a PLAINTEXT one has no credentials to refuse.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from logstream.errors import ConfigError
from logstream.kafka.config import admin_config
from logstream.settings import Settings

__all__ = ["check_kafka_access"]

CHECK_TIMEOUT_S = 8.0
_quiet = logging.getLogger("logstream.kafka.preflight.librdkafka")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


def _down(error: KafkaError) -> bool:
    """The broker cannot be reached at all: nothing to learn about credentials."""
    lowered = error.str().lower()
    return error.code() == KafkaError._ALL_BROKERS_DOWN or "connection refused" in lowered


def _refusal(error: KafkaError) -> str | None:
    text = error.str()
    lowered = text.lower()
    if error.code() == KafkaError._AUTHENTICATION or "authentication" in lowered:
        return "auth"
    if error.code() == KafkaError._SSL or "ssl handshake" in lowered or "certificate" in lowered:
        return "tls"
    return None


def check_kafka_access(settings: Settings, timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """ConfigError if Kafka refuses the configured credentials or TLS; else return (also when
    the broker cannot be reached within `timeout_s`)."""
    conf: dict[str, Any] = admin_config(settings)
    protocol = str(conf.get("security.protocol", "plaintext")).lower()
    if protocol == "plaintext":
        return
    refused: list[tuple[str, str]] = []
    down: list[bool] = []

    def on_error(error: KafkaError) -> None:
        kind = _refusal(error)
        if kind is not None:
            refused.append((kind, error.str()))
        elif _down(error):
            down.append(True)

    options: Any = {**conf, "error_cb": on_error, "logger": _quiet}  # callbacks, not strings
    admin = AdminClient(options)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=0.25)
            return
        except KafkaException:
            admin.poll(0)
        if refused:
            raise ConfigError(_message(settings, *refused[0]))
        if down:
            return  # left to the command
    admin.poll(0)
    if refused:
        raise ConfigError(_message(settings, *refused[0]))


def _message(settings: Settings, kind: str, detail: str) -> str:
    where = settings.bootstrap_servers
    if kind == "auth":
        user = settings.kafka_sasl_username or "(none)"
        return (
            f"Kafka at {where} refused the credentials of user {user!r} "
            f"({settings.kafka_sasl_mechanism or 'SASL'}): check LOGSTREAM_KAFKA_SASL_USERNAME "
            "and LOGSTREAM_KAFKA_SASL_PASSWORD"
        )
    short = detail.split(": ", 1)[-1][:200]
    return (
        f"TLS with Kafka at {where} failed ({short}): check LOGSTREAM_KAFKA_SSL_CA_LOCATION "
        "and the broker's certificate"
    )
