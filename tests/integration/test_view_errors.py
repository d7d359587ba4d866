"""A bug in view code must not eat the log: it stops the consumer at the event's offset,
and a fix plus a restart continue exactly; garbage bytes still go to the DLQ; a view may opt
into dead-lettering the events its code fails on. The views live in a package written at
test time (no logstream file edited), found by module:attribute and by entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from logstream.codec import Codec
from logstream.errors import ViewCodeError
from logstream.kafka.admin import TopicSpec, create_topics
from logstream.registry import resolve_view
from logstream.runtime import ViewRunner
from logstream.schemas import SchemaCatalogue
from logstream.settings import Settings
from logstream.stores.factory import open_view_store
from tests.integration.likes import generate_likes, produce_likes
from tests.view_package import forget_package, write_view_package

REPO = Path(__file__).resolve().parents[2]
POISON_USER = "poison-user"  # the view's bug: it raises on this user's events
GARBAGE_AT = 500  # offset of undecodable bytes, before the bad event
BAD_EVENT = 999  # the 1,000th event (index), at offset BAD_EVENT + 1

VIEW_SOURCE = """
from logstream.view import HOUR_MS, View

def _keys(event):
    if {buggy} and event["user_id"] == "{poison}":
        return [("url", event["no_such_field"])]  # the bug: a KeyError on one event
    return [("url", event["url"])]

visits = View(name="{name}", topics=("{topic}",), bucket_ms=HOUR_MS, key=_keys,
              series=("url",), key_name="url", totals=True, on_error="{on_error}")
"""


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(SchemaCatalogue.load(Settings().resolved_schema_dir))


@pytest.fixture
def poisoned_log(kafka_bootstrap, make_topic, admin, codec):
    """One partition: 1,500 likes, garbage bytes at offset 500, the 1,000th like's user is
    the one the buggy view fails on."""
    topic = make_topic(partitions=1, prefix="visits")
    create_topics(admin, [TopicSpec(f"{topic}.dlq", 1, 1, {})], timeout_s=60)
    events = generate_likes(1_500, seed=3, urls=40)
    events[BAD_EVENT]["user_id"] = POISON_USER
    produce_likes(kafka_bootstrap, topic, events[:GARBAGE_AT], codec)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, key=b"k", value=b"garbage bytes", partition=0)
    assert producer.flush(30) == 0
    produce_likes(kafka_bootstrap, topic, events[GARBAGE_AT:], codec)
    return topic, events


def _write_view(
    root: Path,
    package: str,
    topic: str,
    *,
    buggy: bool,
    on_error: str = "stop",
    entry_point: bool = True,
):
    forget_package(package)
    write_view_package(
        root,
        package,
        VIEW_SOURCE.format(
            buggy=buggy,
            poison=POISON_USER,
            name=f"visits-{package[-6:]}",
            topic=topic,
            on_error=on_error,
        ),
        entry_points={"visits": f"{package}.views:visits"} if entry_point else None,
    )


def _counts(store) -> dict[str, int]:
    return {row[1]: row[2] for row in store.totals_rows("url")}


def _dlq_values(bootstrap: str, topic: str, at_least: int) -> list[bytes]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"r-{topic}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([f"{topic}.dlq"])
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(values) < at_least and time.monotonic() < deadline:
        values += [m.value() for m in consumer.consume(10, timeout=1) if m.error() is None]
    consumer.close()
    return values


def test_a_bug_stops_at_its_offset_and_a_fix_resumes_exactly(
    kafka_bootstrap, poisoned_log, codec, tmp_path, monkeypatch, unique_name
):
    topic, events = poisoned_log
    package = unique_name("uv").replace("-", "_")
    _write_view(tmp_path / "src", package, topic, buggy=True)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    settings = Settings(
        bootstrap_servers=kafka_bootstrap,
        data_dir=tmp_path / "data",
        consume_batch_size=50,
        flush_max_keys=20,  # a flush almost every batch: good batches land before the bug
    )
    view = resolve_view(f"{package}.views:visits", settings)
    store = open_view_store(None, settings.data_dir, view)
    runner = ViewRunner(settings, view, store, codec, until_caught_up=True)
    with pytest.raises(ViewCodeError) as caught:
        runner.run()
    bad_offset = BAD_EVENT + 1  # the garbage sits before it
    error = caught.value
    assert (error.view, error.topic, error.partition, error.offset) == (
        view.name,
        topic,
        0,
        bad_offset,
    )
    assert f"{topic}[0] offset {bad_offset}" in str(error) and "KeyError" in str(error)
    stored = store.positions()[(topic, 0)].next_offset
    assert GARBAGE_AT < stored <= bad_offset  # nothing at or after the bad event committed
    # What was committed is exactly the events before the stored offset.
    before = [e for i, e in enumerate(events) if i + (i >= GARBAGE_AT) < stored]
    assert _counts(store) == dict(Counter(e["url"] for e in before))
    store.close()

    # The fix, and a restart: every event counted once, the garbage dead-lettered once.
    _write_view(tmp_path / "src", package, topic, buggy=False)
    fixed = resolve_view(f"{package}.views:visits", settings)
    assert fixed is not view and fixed.name == view.name
    store = open_view_store(None, settings.data_dir, fixed)
    result = ViewRunner(settings, fixed, store, codec, until_caught_up=True).run()
    assert result.caught_up
    assert _counts(store) == dict(Counter(e["url"] for e in events))
    assert store.positions()[(topic, 0)].next_offset == len(events) + 1
    assert store.stats().dlq_count == 1
    store.close()
    assert b"garbage bytes" in _dlq_values(kafka_bootstrap, topic, 1)
    forget_package(package)


def test_dead_letter_policy_keeps_going(
    kafka_bootstrap, poisoned_log, codec, tmp_path, monkeypatch, unique_name
):
    topic, events = poisoned_log
    package = unique_name("uv").replace("-", "_")
    _write_view(tmp_path / "src", package, topic, buggy=True, on_error="dead_letter")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    settings = Settings(bootstrap_servers=kafka_bootstrap, data_dir=tmp_path / "data")
    view = resolve_view(f"{package}.views:visits", settings)
    store = open_view_store(None, settings.data_dir, view)
    result = ViewRunner(settings, view, store, codec, until_caught_up=True).run()
    assert result.caught_up and result.dead_letters == 2  # garbage + the event it failed on
    good = [e for e in events if e["user_id"] != POISON_USER]
    assert _counts(store) == dict(Counter(e["url"] for e in good))
    assert store.stats().dlq_count == 2
    store.close()
    forget_package(package)


def test_cli_exits_5_with_the_offset_then_resumes_after_the_fix(
    kafka_bootstrap, poisoned_log, tmp_path, unique_name
):
    """`logstream consume module:attr`; by name once in LOGSTREAM_VIEWS."""
    topic, events = poisoned_log
    package = unique_name("uv").replace("-", "_")
    src = tmp_path / "src"
    _write_view(src, package, topic, buggy=True, entry_point=False)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")},
        "PYTHONPATH": os.pathsep.join([str(src), str(REPO)]),
        "LOGSTREAM_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LOGSTREAM_DATA_DIR": str(tmp_path / "data"),
        "LOGSTREAM_CONSUME_BATCH_SIZE": "50",
        "LOGSTREAM_FLUSH_MAX_KEYS": "20",  # flushes land before the bug (a rebuild resumes)
    }
    reference = f"{package}.views:visits"
    command = [sys.executable, "-m", "logstream", "consume", reference]
    command += ["--until-caught-up", "--no-progress"]

    def run(argv: list[str], **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, env={**env, **extra}, capture_output=True, text=True, timeout=180, cwd=tmp_path
        )

    failed = run(command)
    assert failed.returncode == 5, failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: view 'visits-") and f"{topic}[0] offset {BAD_EVENT + 1}" in last
    assert "Traceback" in failed.stderr and "no_such_field" in failed.stderr

    # A rebuild stopped by the bug is not left half built beside a new one: a second
    # rebuild is refused, naming what to do; after the fix, --resume continues it (below).
    logstream = [sys.executable, "-m", "logstream"]
    half = run([*logstream, "rebuild", reference, "--no-progress"])
    assert half.returncode == 5, half.stderr
    again = run([*logstream, "rebuild", reference, "--no-progress"])
    assert again.returncode == 4, again.stderr
    refusal = again.stderr.strip().splitlines()[-1]
    assert "v2 is an unfinished rebuild" in refusal and "--resume" in refusal
    assert "--version v2" in refusal

    _write_view(src, package, topic, buggy=False, entry_point=False)
    done = run(command)
    assert done.returncode == 0, done.stderr
    assert "caught up" in done.stdout
    # Not registered (no entry point yet, no LOGSTREAM_VIEWS): unknown by its name.
    name = f"visits-{package[-6:]}"
    unknown = run([sys.executable, "-m", "logstream", "lag", name, "--json"])
    assert unknown.returncode == 1 and f"unknown view '{name}'" in unknown.stderr
    # Registered through LOGSTREAM_VIEWS alone, it is known by its name to every command.
    listing = run(
        [sys.executable, "-m", "logstream", "lag", name, "--json"], LOGSTREAM_VIEWS=reference
    )
    assert listing.returncode == 0, listing.stderr
    rows = json.loads(listing.stdout)
    assert [(r["group"], r["stored_offset"], r["lag"]) for r in rows] == [
        (name, len(events) + 1, 0)
    ]
    # Its package's entry point (the dist-info on PYTHONPATH) alone registers it as well;
    # with LOGSTREAM_VIEWS too, the same declaration found twice is one view.
    _write_view(src, package, topic, buggy=False, entry_point=True)
    by_entry_point = run([sys.executable, "-m", "logstream", "lag", name, "--json"])
    assert by_entry_point.returncode == 0, by_entry_point.stderr
    assert json.loads(by_entry_point.stdout) == rows
    both = run(
        [sys.executable, "-m", "logstream", "lag", name, "--json"], LOGSTREAM_VIEWS=reference
    )
    assert both.returncode == 0 and json.loads(both.stdout) == rows, both.stderr

    # Rebuild (resumed), promote, drop and backfill take the reference too.
    rebuilt = run([*logstream, "rebuild", reference, "--no-progress", "--resume"])
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"resuming {name} v2" in rebuilt.stdout
    half_built = int(rebuilt.stdout.split("caught up after ")[1].split()[0])
    assert 0 < half_built < len(events)  # went on from where the stopped rebuild was
    assert run([*logstream, "rebuild", reference, "--resume"]).returncode == 4  # none left
    promoted = run([*logstream, "promote", reference])
    assert promoted.returncode == 0 and "queries now read v2" in promoted.stdout, promoted.stderr
    dropped = run([*logstream, "drop", reference, "--version", "v1"])
    assert dropped.returncode == 0 and f"dropped {name} v1" in dropped.stdout, dropped.stderr
    plan = run([*logstream, "backfill", reference, "--to-earliest", "--json"])
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["group"] == f"{name}@v2"

    settings = Settings(bootstrap_servers=kafka_bootstrap, data_dir=tmp_path / "data")
    sys.path.insert(0, str(src))
    try:
        forget_package(package)
        view = resolve_view(reference, settings)
        with open_view_store(None, settings.data_dir, view, f"{view.name}@v2") as store:
            assert _counts(store) == dict(Counter(e["url"] for e in events))  # the rebuild
    finally:
        sys.path.remove(str(src))
        forget_package(package)
