"""A worker in another language, from the contract alone (examples/java).

Likes written by the Java producer and by ingest land in the same partition per URL, the
Python views count both, and the Java consumer's per-URL counts equal `likes-by-url`.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from consumers import VIEWS
from ingest_api.app import create_app
from logstream.codec import Codec
from logstream.runtime import ViewRunner
from logstream.schemas import SchemaCatalogue
from logstream.settings import Settings
from logstream.stores.factory import open_view_store
from tests.integration.client_stack import read_log

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "java"
JAR = EXAMPLE / "target" / "logstream-java-worker.jar"
SCHEMAS = REPO / "avro_schemas"
URL_PREFIX = "https://example.com/java-"
URLS = 12
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.fixture(scope="module")
def jar() -> Path:
    """The example's jar; `.ci/run` builds it, and this builds it when it is missing."""
    if not JAR.exists():
        if shutil.which("mvn") is None:
            pytest.skip("mvn is not installed: cannot build examples/java (CI installs it)")
        subprocess.run(["mvn", "-q", "-B", "package"], cwd=EXAMPLE, check=True, timeout=600)
    if shutil.which("java") is None:
        pytest.skip("java is not installed: cannot run examples/java (CI installs it)")
    return JAR


def java(jar: Path, *args: str) -> str:
    """Run one command of the Java worker; its stdout (stderr shown if it fails)."""
    done = subprocess.run(
        ["java", "-jar", str(jar), *args], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def ingest_likes(settings: Settings, topic: str, n: int) -> list[dict[str, Any]]:
    """`n` likes over the same URLs as the Java producer, through the in-process ingest API."""
    rng = random.Random(3)
    likes = [
        {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "url": f"{URL_PREFIX}{rng.randrange(URLS)}",
            "user_id": f"py-user-{rng.randrange(100)}",
            "occurred_at": BASE_MS + rng.randrange(2 * 86_400_000),
        }
        for _ in range(n)
    ]
    written = []
    with TestClient(create_app(settings, topic_overrides={"like": topic})) as client:
        response = client.post("/v1/events/likes/batch", json=likes)
        assert response.status_code == 202, response.text
        for like, receipt in zip(likes, response.json()["events"], strict=True):
            assert receipt["event_id"] == like["event_id"]
            written.append({**like, "partition": receipt["partition"]})
    return written


def test_java_and_ingest_agree_on_partitions_and_counts(kafka_bootstrap, make_topic, tmp_path, jar):
    topic = make_topic(partitions=6, prefix="likes-java")
    settings = Settings(bootstrap_servers=kafka_bootstrap, data_dir=tmp_path)
    codec = Codec(SchemaCatalogue.load(SCHEMAS))

    from_python = ingest_likes(settings, topic, 400)
    produced = java(
        jar,
        "produce",
        "--bootstrap", kafka_bootstrap,
        "--topic", topic,
        "--schemas", str(SCHEMAS),
        "--count", "500",
        "--seed", "42",
        "--urls", str(URLS),
        "--url-prefix", URL_PREFIX,
    )  # fmt: skip
    from_java = [json.loads(line) for line in produced.splitlines()]
    assert len(from_java) == 500
    assert len({like["event_id"] for like in from_java}) == 500
    assert {like["topic"] for like in from_java} == {topic}

    # Both writers chose the same partition for each URL, and every URL got likes from both.
    by_writer: dict[str, dict[str, set[int]]] = {
        "python": defaultdict(set),
        "java": defaultdict(set),
    }
    for writer, likes in (("python", from_python), ("java", from_java)):
        for like in likes:
            by_writer[writer][like["url"]].add(like["partition"])
    assert (
        set(by_writer["python"])
        == set(by_writer["java"])
        == {f"{URL_PREFIX}{i}" for i in range(URLS)}
    )
    for url in by_writer["java"]:
        assert by_writer["python"][url] == by_writer["java"][url], url
    stored: dict[str, set[int]] = defaultdict(set)
    for message in read_log(kafka_bootstrap, topic, codec):
        assert message.key == message.url.encode()
        stored[message.url].add(message.partition)
    assert {url: len(parts) for url, parts in stored.items()} == dict.fromkeys(stored, 1)
    assert len({next(iter(parts)) for parts in stored.values()}) > 1  # keys really spread out

    # The Python view counts the likes of both writers.
    view = VIEWS["likes-by-url"]
    store = open_view_store(None, tmp_path, view)
    try:
        result = ViewRunner(
            settings,
            view,
            store,
            codec,
            topics=(topic,),
            group_id=f"likes-by-url-{topic}",
            until_caught_up=True,
        ).run()
        assert result.caught_up
        view_counts = {row[1]: row[2] for row in store.totals_rows("url")}
        assert store.stats().dlq_count == 0
    finally:
        store.close()
    expected = Counter(like["url"] for like in [*from_python, *from_java])
    assert view_counts == dict(expected)

    # ... and the Java consumer, reading the same log, counts the same.
    counted = java(
        jar, "count-by-url", "--bootstrap", kafka_bootstrap, "--topic", topic,
        "--schemas", str(SCHEMAS),
    )  # fmt: skip
    assert json.loads(counted) == view_counts
