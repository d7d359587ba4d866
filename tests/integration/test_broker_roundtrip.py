"""The fixture broker is real: 10,000 messages go in and come back, exactly, in order."""

from __future__ import annotations

import time
from collections import defaultdict

from confluent_kafka import Consumer, Producer

MESSAGES = 10_000


def test_ten_thousand_messages_round_trip_in_order_per_partition(
    kafka_bootstrap, make_topic, unique_name
):
    topic = make_topic(partitions=6)
    producer = Producer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
        }
    )
    sent: dict[int, list[bytes]] = defaultdict(list)
    errors: list[str] = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            sent[msg.partition()].append(msg.value())

    for i in range(MESSAGES):
        producer.produce(
            topic, key=f"k{i % 97}".encode(), value=f"v{i}".encode(), on_delivery=on_delivery
        )
        producer.poll(0)
    assert producer.flush(30) == 0
    assert errors == []

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": unique_name("g"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    received: dict[int, list[bytes]] = defaultdict(list)
    offsets: dict[int, list[int]] = defaultdict(list)
    deadline = time.monotonic() + 60
    try:
        while sum(map(len, received.values())) < MESSAGES and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=1.0):
                assert msg.error() is None, msg.error()
                received[msg.partition()].append(msg.value())
                offsets[msg.partition()].append(msg.offset())
    finally:
        consumer.close()

    assert sum(map(len, received.values())) == MESSAGES
    assert dict(received) == dict(sent)  # same messages, same order, per partition
    for partition, offs in offsets.items():
        assert offs == list(range(len(offs))), partition
