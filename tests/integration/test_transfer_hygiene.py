"""Export never writes through a planted link; import derives key and time from each event
and refuses a file that disagrees, or that holds dead letters unless asked."""

from __future__ import annotations

import os
import subprocess
import sys
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
    dump.with_name("out.avro.partial").symlink_to(victim)  # the old fixed name: not used
    done = cli(kafka_bootstrap, tmp_path, "export", topic, "-o", str(dump))
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "precious\n"
    assert not dump.is_symlink() and len(export_records(dump)) == 50
    names = sorted(p.name for p in tmp_path.iterdir() if p.name != "cli-data")
    assert names == ["out.avro", "out.avro.partial", "victim.txt"]  # no temporary file left
    assert dump.stat().st_mode & 0o777 == 0o644 & ~_umask()

    # A link at the output path itself is replaced, its target left alone.
    linked = tmp_path / "linked.avro"
    linked.symlink_to(victim)
    done = cli(kafka_bootstrap, tmp_path, "export", topic, "-o", str(linked))
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "precious\n"
    assert not linked.is_symlink() and len(export_records(linked)) == 50


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_two_exports_to_one_file_both_finish(kafka_bootstrap, make_topic, codec, tmp_path):
    """Each export writes its own temporary file: neither deletes the other's."""
    topic = make_topic(partitions=3, prefix="likes-race")
    produce_likes(kafka_bootstrap, topic, generate_likes(3_000, seed=5), codec)
    dump = tmp_path / "same.avro"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")},
        "LOGSTREAM_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LOGSTREAM_DATA_DIR": str(tmp_path / "cli-data"),
    }
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "logstream", "export", topic, "-o", str(dump)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
    assert len(export_records(dump)) == 3_000
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_export_refuses_a_folder_link_owned_by_someone_else(
    kafka_bootstrap, make_topic, codec, tmp_path
):
    if os.getuid() != 0:
        pytest.skip("giving a link to another user needs root")
    topic = make_topic(partitions=1, prefix="likes-folder-link")
    produce_likes(kafka_bootstrap, topic, generate_likes(5, seed=6), codec)
    real = tmp_path / "real"
    real.mkdir()
    via = tmp_path / "via"
    via.symlink_to(real)
    os.lchown(via, 65534, 65534)
    done = cli(kafka_bootstrap, tmp_path, "export", topic, "-o", str(via / "out.avro"))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to export through" in lines[0], lines
    assert list(real.iterdir()) == []
    os.lchown(via, os.getuid(), os.getgid())  # our own link is fine
    done = cli(kafka_bootstrap, tmp_path, "export", topic, "-o", str(via / "out.avro"))
    assert done.returncode == 0, done.stderr
    assert len(export_records(real / "out.avro")) == 5


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


def test_a_file_exported_from_a_dlq_topic_is_dead_letters(
    kafka_bootstrap, make_topic, codec, tmp_path
):
    """The file's own `logstream.export.topic` counts, even with no dead-letter headers."""
    source = make_topic(partitions=1, prefix="likes-meta")
    target = make_topic(partitions=1, prefix="likes-meta-in")
    produce_likes(kafka_bootstrap, source, generate_likes(3, seed=10), codec)
    dump = tmp_path / "meta.avro"
    assert cli(kafka_bootstrap, tmp_path, "export", source, "-o", str(dump)).returncode == 0
    with dump.open("rb") as f:
        reader = fastavro.reader(f)
        schema, metadata, records = reader.writer_schema, dict(reader.metadata), list(reader)
    meta = {k: v for k, v in metadata.items() if not k.startswith("avro.")}
    meta["logstream.export.topic"] = source + ".dlq"
    with dump.open("wb") as out:
        fastavro.writer(out, fastavro.parse_schema(schema), records, metadata=meta)

    refused = cli(kafka_bootstrap, tmp_path, "import", str(dump), "--topic", target)
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and "dead-letter topic" in lines[0] and "--allow-dead-letters" in lines[0]
    )
    assert sum(end_offsets(kafka_bootstrap, target).values()) == 0
    allowed = cli(
        kafka_bootstrap, tmp_path, "import", str(dump), "--topic", target, "--allow-dead-letters"
    )
    assert allowed.returncode == 0, allowed.stderr
    assert sum(end_offsets(kafka_bootstrap, target).values()) == 3
