"""`logstream rebuild` builds a new version beside the current one while queries keep
answering; `promote` switches atomically once caught up; the old version is kept until dropped."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from fastapi.testclient import TestClient

from ingest_api.app import create_app
from logstream.codec import Codec
from logstream.schemas import SchemaCatalogue
from logstream.settings import Settings
from tests.integration.likes import generate_likes, produce_likes


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logstream", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_rebuild_and_promote_without_query_errors(kafka_bootstrap, tmp_path: Path, unique_name):
    prefix = unique_name("rb") + "."
    env = {
        **os.environ,
        "LOGSTREAM_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LOGSTREAM_DATA_DIR": str(tmp_path),
        "LOGSTREAM_TOPIC_PREFIX": prefix,
    }
    assert cli(env, "topics", "create", "--partitions", "3").returncode == 0
    topic = prefix + "likes"
    codec = Codec(SchemaCatalogue.load(Settings().resolved_schema_dir))
    events = generate_likes(5_000, seed=8, urls=40)
    produce_likes(kafka_bootstrap, topic, events[:3000], codec)
    built = cli(env, "consume", "likes-by-url", "--until-caught-up", "--no-progress")
    assert built.returncode == 0, built.stderr
    produce_likes(kafka_bootstrap, topic, events[3000:], codec)

    settings = Settings(bootstrap_servers=kafka_bootstrap, data_dir=tmp_path, topic_prefix=prefix)
    before = Counter(e["url"] for e in events[:3000])
    after = Counter(e["url"] for e in events)
    url = before.most_common(1)[0][0]
    seen: list[tuple[int, int]] = []
    stop = threading.Event()
    with TestClient(create_app(settings)) as client:

        def query() -> None:
            while not stop.is_set():
                r = client.get("/v1/views/likes-by-url", params={"url": url})
                seen.append((r.status_code, r.json().get("count", -1)))

        poller = threading.Thread(target=query)
        poller.start()
        try:
            rebuilt = cli(env, "rebuild", "likes-by-url", "--no-progress")
            assert rebuilt.returncode == 0, rebuilt.stderr
            assert "v2" in rebuilt.stdout
            promoted = cli(env, "promote", "likes-by-url")
            assert promoted.returncode == 0, promoted.stderr
            final = client.get("/v1/views/likes-by-url", params={"url": url}).json()
            while not any(count == after[url] for _s, count in seen[-3:]):
                pass  # the poller sees the promotion within the pointer's TTL
        finally:
            stop.set()
            poller.join(timeout=30)
        assert final["count"] in (before[url], after[url])
        assert final["freshness"]["view_version"] in ("v1", "v2")
        top = client.get("/v1/views/likes-by-url/top", params={"limit": 40}).json()["items"]
        assert {i["url"]: i["count"] for i in top} == dict(after)

    statuses = {status for status, _count in seen}
    assert statuses == {200}
    counts = [count for _s, count in seen]
    assert set(counts) <= {before[url], after[url]}
    switch = counts.index(after[url])
    assert all(c == after[url] for c in counts[switch:])  # never back to the old version

    produce_likes(kafka_bootstrap, topic, generate_likes(1, seed=1), codec)
    refused = cli(env, "promote", "likes-by-url", "--version", "v1")
    assert refused.returncode == 4
    assert "behind" in refused.stderr
    assert cli(env, "drop", "likes-by-url", "--version", "v2").returncode == 4
    dropped = cli(env, "drop", "likes-by-url", "--version", "v1")
    assert dropped.returncode == 0, dropped.stderr
    listing = cli(env, "views")
    assert "likes-by-url v2 (current)" in listing.stdout
    assert "likes-by-url v1" not in listing.stdout
