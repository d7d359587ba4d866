"""Export never writes through a planted link; import derives key and time from each event
and refuses a file that disagrees, or that holds dead letters unless asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import Producer

from logstream.codec import Codec
from logstream.schemas import SchemaCatalogue
from logstream.settings import Settings
from tests.integration.likes import generate_likes, produce_likes
from tests.integration.test_transfer import cli, end_offsets, export_records, read_topic


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(SchemaCatalogue.load(Settings().resolved_schema_dir))


def rewrite(path: Path, change: Any) -> None:
    """Rewrite an export file with `change(records)` applied, schema and metadata kept."""
    with path.open("rb") as f:
        reader = fastavro.reader(f)
        schema, metadata = reader.writer_schema, dict(reader.metadata)
        records = list(reader)
    change(records)
    meta = {k: v for k, v in metadata.items() if not k.startswith("avro.")}
    with path.open("wb") as out:
        fastavro.writer(out, fastavro.parse_schema(schema), records, metadata=meta)


def test_export_does_not_write_through_planted_links(kafka_bootstrap, make_topic, codec, tmp_path):
    topic = make_topic(partitions=2, prefix="likes-link")
    produce_likes(kafka_bootstrap, topic, generate_likes(50, seed=3), codec)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    dump = tmp_path / "out.avro"
    dump.with_name("out.avro.partial").symlink_to(victim)
    done = cli(kafka_bootstrap, tmp_path, "export", topic, "-o", str(dump))
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "precious\n"
    assert not dump.is_symlink() and len(export_records(dump)) == 50
    assert not dump.with_name("out.avro.partial").exists()

    # A link at the output path itself is replaced, its target left alone.
    linked = tmp_path / "linked.avro"
    linked.symlink_to(victim)
    done = cli(kafka_bootstrap, tmp_path, "export", topic, "-o", str(linked))
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "precious\n"
    assert not linked.is_symlink() and len(export_records(linked)) == 50


@pytest.mark.parametrize("field", ["key", "timestamp_ms"])
def test_import_refuses_a_key_or_time_that_disagrees_with_the_event(
    kafka_bootstrap, make_topic, codec, tmp_path, field
):
    source = make_topic(partitions=2, prefix="likes-tamper")
    target = make_topic(partitions=2, prefix="likes-tamper-in")
    produce_likes(kafka_bootstrap, source, generate_likes(20, seed=5), codec)
    dump = tmp_path / "likes.avro"
    assert cli(kafka_bootstrap, tmp_path, "export", source, "-o", str(dump)).returncode == 0

    def tamper(records: list[dict[str, Any]]) -> None:
        if field == "key":
            records[7]["key"] = b"https://victim.example/"
        else:
            records[7]["timestamp_ms"] += 86_400_000

    rewrite(dump, tamper)
    done = cli(kafka_bootstrap, tmp_path, "import", str(dump), "--topic", target)
    assert done.returncode == 1
    assert "record 8 " in done.stderr and "disagrees with the event" in done.stderr
    assert "nothing was produced" in done.stderr
    assert sum(end_offsets(kafka_bootstrap, target).values()) == 0

    # The untouched file imports, with every key and time derived as the contract says.
    assert cli(kafka_bootstrap, tmp_path, "export", source, "-o", str(dump)).returncode == 0
    done = cli(kafka_bootstrap, tmp_path, "import", str(dump), "--topic", target)
    assert done.returncode == 0, done.stderr
    assert read_topic(kafka_bootstrap, target, codec) == read_topic(kafka_bootstrap, source, codec)


def test_import_refuses_dead_letters_unless_asked(kafka_bootstrap, make_topic, codec, tmp_path):
    source = make_topic(partitions=1, prefix="likes-dlq")
    target = make_topic(partitions=1, prefix="likes-dlq-in")
    events = generate_likes(3, seed=9)
    produce_likes(kafka_bootstrap, source, events[:2], codec)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    dead = events[2]
    producer.produce(
        source,
        key=dead["url"].encode(),
        value=codec.encode("like", dead),
        timestamp=dead["occurred_at"],
        headers=[("logstream.error", b"StoreError: boom"), ("logstream.origin.offset", b"4")],
    )
    assert producer.flush(30) == 0
    dump = tmp_path / "dlq.avro"
    assert cli(kafka_bootstrap, tmp_path, "export", source, "-o", str(dump)).returncode == 0

    refused = cli(kafka_bootstrap, tmp_path, "import", str(dump), "--topic", target)
    assert refused.returncode == 1
    assert "dead-letter headers" in refused.stderr and "--allow-dead-letters" in refused.stderr
    assert sum(end_offsets(kafka_bootstrap, target).values()) == 0

    allowed = cli(
        kafka_bootstrap, tmp_path, "import", str(dump), "--topic", target, "--allow-dead-letters"
    )
    assert allowed.returncode == 0, allowed.stderr
    assert set(read_topic(kafka_bootstrap, target, codec)) == {e["event_id"] for e in events}
