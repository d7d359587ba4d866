"""The only place that builds librdkafka configuration dicts (docs/conventions.md)."""

from __future__ import annotations

from typing import Any

from logstream.settings import Settings

__all__ = [
    "PARTITIONER",
    "admin_config",
    "consumer_config",
    "dead_letter_producer_config",
    "producer_config",
    "sasl_ssl_properties",
]

# Bounds on librdkafka's own waits for long-running consumers, so that they notice a broker
# outage and come back from it quickly (defaults: up to 10 s between reconnects, 60 s per
# request, 30 s to set up a connection). A property given in LOGSTREAM_KAFKA_EXTRA wins.
RESILIENCE = {
    "reconnect.backoff.ms": 100,
    "reconnect.backoff.max.ms": 1000,
    "socket.timeout.ms": 15000,
    "socket.connection.setup.timeout.ms": 10000,
    "retry.backoff.max.ms": 1000,
}


def _with_resilience(conf: dict[str, Any]) -> dict[str, Any]:
    for key, value in RESILIENCE.items():
        conf.setdefault(key, value)
    return conf


def sasl_ssl_properties(username: str, password: str, ca_location: str) -> dict[str, Any]:
    """SCRAM-SHA-512 over TLS, the server verified against `ca_location` (hostname too):
    what `broker start --secure` clusters require (settings give the same through
    LOGSTREAM_KAFKA_SECURITY_PROTOCOL and the SASL variables)."""
    return {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": username,
        "sasl.password": password,
        "ssl.ca.location": ca_location,
    }


def admin_config(settings: Settings) -> dict[str, Any]:
    return settings.kafka_common()


# After a partition leader dies, the producer must learn the new leader fast: librdkafka
# refreshes metadata on the first error and then retries with backoff; the defaults let
# that backoff grow to 1 s (retries) and 10 s (reconnects), and leave a connection attempt
# to a silently dead host hanging for 30 s. README, "Failover", explains each value.
PRODUCER_FAILOVER: dict[str, int] = {
    "retry.backoff.ms": 50,
    "retry.backoff.max.ms": 250,
    "reconnect.backoff.ms": 50,
    "reconnect.backoff.max.ms": 250,
    "socket.connection.setup.timeout.ms": 3000,
    "topic.metadata.refresh.interval.ms": 10000,
    "metadata.max.age.ms": 30000,
    "topic.metadata.propagation.max.ms": 5000,
}


# Part of the topic contract: a keyed message goes to partition
# `toPositive(murmur2(key)) % partitions`, the Java client's default partitioner, so Java,
# Kafka Streams, Connect and any producer that copies Java place a key where logstream does
# (librdkafka's own default, `consistent_random`, hashes with CRC32 and disagrees). Keys are
# never null in logstream; `_random` only says what librdkafka does with a null key.
PARTITIONER = "murmur2_random"


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Durable by default: a delivery report means every in-sync replica has the event.
    Tuned to find a new partition leader within a second or so of a failover. Every
    producer logstream runs (ingest, import, dead letters) is built here, so all of them
    partition keys as Java does; LOGSTREAM_KAFKA_EXTRA cannot change that."""
    conf: dict[str, Any] = dict(PRODUCER_FAILOVER)
    conf.update(settings.kafka_common())  # LOGSTREAM_KAFKA_EXTRA may override the tuning
    conf.update(
        {
            "acks": "all",
            "enable.idempotence": True,
            "partitioner": PARTITIONER,
            "linger.ms": 5,
            "compression.type": "lz4",
            "queue.buffering.max.messages": settings.ingest_queue_max_messages,
        }
    )
    conf.update(overrides)
    return conf


def dead_letter_producer_config(settings: Settings) -> dict[str, Any]:
    """Durable, unbatched (dead letters are rare) and quick to reconnect after an outage.

    No delivery deadline (`message.timeout.ms=0`): a dead letter queued during a long
    broker outage must not fail for good; each flush attempt has its own bound instead."""
    return _with_resilience(producer_config(settings, **{"linger.ms": 0, "message.timeout.ms": 0}))


def consumer_config(settings: Settings, group_id: str, **overrides: Any) -> dict[str, Any]:
    """Offsets are ours to manage: no auto commit, no auto store, start from earliest."""
    conf = settings.kafka_common()
    conf.update(
        {
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            # A crashed member's partitions move on after this long (Kafka's default: 45 s).
            "session.timeout.ms": settings.consumer_session_timeout_ms,
            "heartbeat.interval.ms": max(1000, settings.consumer_session_timeout_ms // 5),
            "isolation.level": "read_committed",
            "fetch.min.bytes": 1,
            "queued.max.messages.kbytes": 65536,
        }
    )
    _with_resilience(conf)
    if settings.consumer_instance_id:
        conf["group.instance.id"] = f"{group_id}:{settings.consumer_instance_id}"
    conf.update(overrides)
    return conf
