"""Import refuses control characters in every string field, naming it, by the rule ingest
shares (logstream/text_rules.py): an export of a log that a producer wrote NUL urls into
straight to Kafka cannot be re-queued, nor an NDJSON line with a terminal escape."""

from __future__ import annotations

import json

import pytest

from logstream.codec import Codec
from logstream.schemas import SchemaCatalogue
from logstream.settings import Settings
from tests.integration.likes import generate_likes, produce_likes
from tests.integration.test_transfer import cli, end_offsets


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(SchemaCatalogue.load(Settings().resolved_schema_dir))


def test_an_export_holding_a_nul_url_is_refused_naming_the_field(
    kafka_bootstrap, make_topic, codec, tmp_path
):
    source = make_topic(partitions=1, prefix="likes-nul-out")
    target = make_topic(partitions=1, prefix="likes-nul-in")
    events = generate_likes(5, seed=4)
    events[3]["url"] = "https://victim.example/\x00a"
    produce_likes(kafka_bootstrap, source, events, codec)  # straight to Kafka, no ingest
    dump = tmp_path / "likes.avro"
    assert cli(kafka_bootstrap, tmp_path, "export", source, "-o", str(dump)).returncode == 0
    done = cli(kafka_bootstrap, tmp_path, "import", str(dump), "--topic", target)
    assert done.returncode == 1
    assert "record 4 " in done.stderr and "field url" in done.stderr and "U+0000" in done.stderr
    assert "\x00" not in done.stderr
    assert sum(end_offsets(kafka_bootstrap, target).values()) == 0


def test_an_ndjson_line_with_a_control_character_is_refused_naming_the_field(
    kafka_bootstrap, make_topic, tmp_path
):
    target = make_topic(partitions=1, prefix="likes-esc-in")
    good = {"url": "https://a.example/", "user_id": "u\tv", "occurred_at": 1_767_225_600_000}
    bad = {**good, "user_id": "u\x1b[2J"}
    path = tmp_path / "likes.ndjson"
    path.write_text("\n".join(json.dumps(e) for e in (good, bad)) + "\n")
    done = cli(kafka_bootstrap, tmp_path, "import", str(path), "--topic", target)
    assert done.returncode == 1
    assert "line 2" in done.stderr and "field user_id" in done.stderr and "U+001B" in done.stderr
    assert sum(end_offsets(kafka_bootstrap, target).values()) == 0
    path.write_text(json.dumps(good) + "\n")  # TAB is allowed
    done = cli(kafka_bootstrap, tmp_path, "import", str(path), "--topic", target)
    assert done.returncode == 0, done.stderr
    assert sum(end_offsets(kafka_bootstrap, target).values()) == 1
