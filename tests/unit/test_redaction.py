"""Secrets are never printed: URLs, DSNs, Kafka settings, settings reprs, log lines and
tracebacks all go through one helper (`logstream.redact`)."""

from __future__ import annotations

import logging

import pytest

from logstream.redact import install_log_redaction, redact, redact_kafka, register_secrets
from logstream.settings import Settings


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("postgresql://bob:s3cr%40tpw@db:5432/views", "s3cr%40tpw"),
        ("could not connect: postgresql://bob:hunter2x@db/views failed", "hunter2x"),
        ("host=db port=5432 password=pa55word user=bob", "pa55word"),
        ("postgresql://db/views?user=bob&password=qu3ry", "qu3ry"),
        ("{'sasl.password': 'k4fka', 'bootstrap.servers': 'b:9092'}", "k4fka"),
        ('{"ssl.key.password": "keyp4ss"}', "keyp4ss"),
    ],
)
def test_patterns_are_masked(text: str, secret: str) -> None:
    clean = redact(text)
    assert secret not in clean and "***" in clean


@pytest.mark.parametrize(
    "text",
    ["https://example.com/a?b=c", "likes[3] stored=10 end=12", "user@example.com at 10:20"],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_settings_never_show_their_secrets() -> None:
    settings = Settings(
        store_url="postgresql://bob:St0reSecret@db/views",
        kafka_sasl_password="Sa5lSecret",
        kafka_extra={"sasl.oauthbearer.client.secret": "0authSecret", "linger.ms": "5"},
    )
    for text in (repr(settings), str(settings)):
        for secret in ("St0reSecret", "Sa5lSecret", "0authSecret"):
            assert secret not in text
        assert "linger.ms" in text and "postgresql://bob:***@db/views" in text
    # Building the settings registered their secrets: a library message is masked too.
    assert redact("libpq: bad password St0reSecret; sasl Sa5lSecret") == (
        "libpq: bad password ***; sasl ***"
    )
    assert settings.kafka_common()["sasl.password"] == "Sa5lSecret"  # still used as is


def test_kafka_conf_is_masked() -> None:
    conf = {"sasl.password": "x1", "sasl.username": "u", "ssl.key.location": "/k", "a": None}
    assert redact_kafka(conf) == {
        "sasl.password": "***",
        "sasl.username": "u",
        "ssl.key.location": "/k",
        "a": None,
    }


def test_log_records_and_tracebacks_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    register_s = "L0gSecret!"
    register_secrets([register_s])
    log = logging.getLogger("test.redaction")
    with caplog.at_level(logging.INFO):
        log.info("connecting with %s to %s", register_s, "postgresql://u:Pw123456@h/d")
        try:
            raise RuntimeError(f"failed with {register_s}")
        except RuntimeError:
            log.exception("store failed")
    text = caplog.text
    assert register_s not in text and "Pw123456" not in text
    assert "postgresql://u:***@h/d" in text and "RuntimeError: failed with ***" in text
