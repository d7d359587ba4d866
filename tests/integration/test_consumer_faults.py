"""Consumers survive faults unattended (issue 9), against a real private broker we stop:
the broker goes away and comes back, the disk fills up and is freed, SIGTERM arrives in the
middle of it; the view ends up exact every time and nothing waits without a bound."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from consumers import VIEWS
from logstream.broker.local import LocalCluster
from logstream.codec import Codec
from logstream.errors import StoreError
from logstream.runtime import ViewRunner
from logstream.schemas import SchemaCatalogue
from logstream.settings import Settings
from logstream.stores.factory import open_view_store, sqlite_path
from logstream.stores.sqlite import SQLiteViewStore
from tests.conftest import local_cluster
from tests.integration.likes import expected_views, generate_likes, produce_likes

REPO = Path(__file__).resolve().parents[2]
VIEW = VIEWS["likes-by-url"]


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(SchemaCatalogue.load(Settings().resolved_schema_dir))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A broker of our own: these tests stop and start it."""
    cluster = local_cluster(tmp_path_factory.mktemp("fault-broker"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def topic(broker: LocalCluster, unique_name: Callable[[str], str]) -> str:
    """A fresh `<prefix>likes` (and its .dlq) on the private broker, through the CLI."""
    broker.start()  # a no-op unless an earlier test left it stopped
    prefix = unique_name("f") + "."
    created = cli(
        {"LOGSTREAM_TOPIC_PREFIX": prefix}, broker, "topics", "create", "--partitions", "3"
    )
    assert created.returncode == 0, created.stderr
    return prefix + "likes"


def env_for(broker: LocalCluster, data_dir: Path, topic: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")},
        "LOGSTREAM_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "LOGSTREAM_DATA_DIR": str(data_dir),
        "LOGSTREAM_TOPIC_PREFIX": topic.removesuffix("likes"),
    }


def cli(
    extra: dict[str, str], broker: LocalCluster, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")},
        "LOGSTREAM_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        **extra,
    }
    return subprocess.run(
        [sys.executable, "-m", "logstream", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def start_consumer(env: dict[str, str], log_file: Path) -> subprocess.Popen[bytes]:
    with log_file.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "logstream", "consume", VIEW.name],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def applied(store: Any) -> int:
    """Events the view has applied (fresh topics start at offset 0)."""
    return sum(p.next_offset for p in store.positions().values())


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll until `predicate()`; return how long it took."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout_s, f"{what}: not within {timeout_s} s"
        time.sleep(0.05)
    return time.monotonic() - started


def assert_exact(store: Any, events: list[dict[str, Any]]) -> None:
    assert applied(store) == len(events)
    got = {row[1]: (row[2], row[3], row[4]) for row in store.totals_rows("url")}
    assert got == expected_views(events).url


def sigterm_and_time(proc: subprocess.Popen[bytes], limit_s: float) -> float:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"the consumer did not exit within {limit_s} s of SIGTERM")
    return time.monotonic() - started


def log_text(log_file: Path) -> str:
    return log_file.read_text(errors="replace")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_consumer_rides_out_a_broker_outage_and_sigterm_while_down_is_quick(
    broker: LocalCluster, topic: str, codec: Codec, tmp_path: Path
):
    events = generate_likes(1_000, seed=21, urls=50)
    produce_likes(broker.bootstrap_servers, topic, events[:500], codec)
    env = env_for(broker, tmp_path, topic)
    log_file = tmp_path / "consumer.log"
    proc = start_consumer(env, log_file)
    store = None
    try:
        wait_for(lambda: sqlite_file(tmp_path).exists(), 60, "store created")
        store = open_view_store(None, tmp_path, VIEW)
        wait_for(lambda: applied(store) == 500, 60, "first events applied")

        broker.stop()
        down_since = time.monotonic()
        while time.monotonic() - down_since < 20:  # the outage: it must keep running
            assert proc.poll() is None, log_text(log_file)
            time.sleep(0.25)
        broker.start()
        back_at = time.monotonic()
        produce_likes(broker.bootstrap_servers, topic, events[500:], codec)
        wait_for(lambda: applied(store) == 1_000, 30 - (time.monotonic() - back_at), "recovery")
        recovery_s = time.monotonic() - back_at
        assert_exact(store, events)
        assert proc.poll() is None

        broker.stop()  # and now SIGTERM while the broker is entirely down
        down_since = time.monotonic()
        while time.monotonic() - down_since < 3:  # still assigned, commits outstanding
            assert proc.poll() is None
            time.sleep(0.25)
        exit_s = sigterm_and_time(proc, 10)
        assert proc.returncode == 0, log_text(log_file)
        text = log_text(log_file)
        assert "Traceback" not in text and "AssertionError" not in text, text
        print(f"recovered {recovery_s:.1f} s after the broker was back; ", end="")
        print(f"exited {exit_s:.1f} s after SIGTERM with the broker down")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if store is not None:
            store.close()
        broker.start()


def sqlite_file(data_dir: Path) -> Path:
    return sqlite_path(None, data_dir, VIEW.name)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 24 MiB filesystem (tmpfs) we can fill; skipped where mounting is not allowed."""
    where = tmp_path / "disk"
    where.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:  # no mount(8)
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the filesystem says ENOSPC."""
    filler = disk / "filler"
    chunk = b"\0" * (256 * 1024)
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(chunk)
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    with contextlib.suppress(OSError), filler.open("ab") as handle:  # the last few blocks
        while True:
            handle.write(b"\0" * 4096)
            handle.flush()
    return filler


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_full_disk_waits_then_resumes_exactly(
    broker: LocalCluster, topic: str, codec: Codec, tmp_path: Path, small_disk: Path
):
    first = generate_likes(300, seed=4, urls=30)
    # Distinct URLs: each later event needs new rows, so the full disk cannot take them.
    later = [
        {**event, "url": f"https://example.com/full/{i:06d}/" + "p" * 60}
        for i, event in enumerate(generate_likes(20_000, seed=5))
    ]
    produce_likes(broker.bootstrap_servers, topic, first, codec)
    env = env_for(broker, small_disk, topic)
    log_file = tmp_path / "consumer.log"  # not on the small disk
    proc = start_consumer(env, log_file)
    store: SQLiteViewStore | None = None
    try:
        wait_for(lambda: sqlite_file(small_disk).exists(), 60, "store created")
        store = open_view_store(None, small_disk, VIEW)  # type: ignore[assignment]
        assert store is not None
        wait_for(lambda: applied(store) == 300, 60, "first events applied")

        filler = fill(small_disk)
        produce_likes(broker.bootstrap_servers, topic, later, codec)
        wait_for(lambda: "cannot commit the flush yet" in log_text(log_file), 60, "store error")
        assert "full" in log_text(log_file)
        stuck_at = applied(store)
        assert stuck_at < 300 + len(later)
        full_since = time.monotonic()
        while time.monotonic() - full_since < 5:  # it waits (retrying) instead of dying
            assert proc.poll() is None, log_text(log_file)
            time.sleep(0.25)
        assert applied(store) == stuck_at

        filler.unlink()
        resumed_s = wait_for(lambda: applied(store) == 300 + len(later), 60, "resumed")
        assert_exact(store, first + later)
        assert "flush committed after" in log_text(log_file)

        exit_s = sigterm_and_time(proc, 10)
        assert proc.returncode == 0, log_text(log_file)
        text = log_text(log_file)
        assert "Traceback" not in text and "AssertionError" not in text, text
        print(
            f"resumed {resumed_s:.1f} s after space was freed; exited {exit_s:.1f} s after SIGTERM"
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if store is not None:
            store.close()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sigterm_while_the_store_is_full_is_quick(
    broker: LocalCluster, topic: str, codec: Codec, tmp_path: Path, small_disk: Path
):
    later = [
        {**event, "url": f"https://example.com/full/{i:06d}/" + "p" * 60}
        for i, event in enumerate(generate_likes(20_000, seed=6))
    ]
    produce_likes(broker.bootstrap_servers, topic, later[:10], codec)
    env = env_for(broker, small_disk, topic)
    log_file = tmp_path / "consumer.log"
    proc = start_consumer(env, log_file)
    try:
        wait_for(lambda: sqlite_file(small_disk).exists(), 60, "store created")
        store = open_view_store(None, small_disk, VIEW)
        try:
            wait_for(lambda: applied(store) == 10, 60, "first events applied")
            fill(small_disk)
            produce_likes(broker.bootstrap_servers, topic, later[10:], codec)
            wait_for(lambda: "cannot commit the flush yet" in log_text(log_file), 60, "store error")
            exit_s = sigterm_and_time(proc, 10)
            assert proc.returncode == 0, log_text(log_file)
            assert applied(store) < len(later)  # the unflushed batch waits for the next run
            assert "AssertionError" not in log_text(log_file)
            print(f"exited {exit_s:.1f} s after SIGTERM with the store full")
        finally:
            store.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_stop_with_a_kafka_commit_that_cannot_complete_is_bounded(
    broker: LocalCluster, topic: str, codec: Codec, tmp_path: Path
):
    """The final flush's Kafka offset commit goes to a coordinator that is gone: the store
    still gets the flush and `run()` returns within its bound (it used to wait for Kafka)."""
    events = generate_likes(400, seed=9, urls=20)
    produce_likes(broker.bootstrap_servers, topic, events, codec)
    settings = Settings(
        bootstrap_servers=broker.bootstrap_servers,
        data_dir=tmp_path,
        flush_interval_s=600,  # nothing is flushed until the stop
    )
    store = open_view_store(None, tmp_path, VIEW)
    stalls: list[str] = []
    runner = ViewRunner(
        settings, VIEW, store, codec, topics=(topic,), group_id=topic + "-g", on_stall=stalls.append
    )
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        wait_for(lambda: runner.result.events_applied == len(events), 60, "events read")
        assert applied(store) == 0
        broker.stop()
        started = time.monotonic()
        runner.stop()
        thread.join(timeout=10)
        took = time.monotonic() - started
        assert not thread.is_alive(), "run() did not return within 10 s of stop()"
        assert took < 8, took  # loop round + final flush + bounded close; Kafka waits >= 10 s
        assert_exact(store, events)  # the store transaction landed; Kafka's copy did not
        assert stalls == []
        print(f"stopped in {took:.1f} s with the broker down and a Kafka commit outstanding")
    finally:
        runner.stop()
        thread.join(timeout=30)
        store.close()
        broker.start()


def test_a_store_error_that_will_not_pass_stops_the_consumer_cleanly(
    broker: LocalCluster, topic: str, codec: Codec, tmp_path: Path
):
    """Not every store error is waited out: a read-only store stops `run()` with that
    error, as before, and shutting down does not add an AssertionError to it."""
    events = generate_likes(50, seed=12, urls=5)
    produce_likes(broker.bootstrap_servers, topic, events, codec)
    settings = Settings(bootstrap_servers=broker.bootstrap_servers, data_dir=tmp_path)
    store = open_view_store(None, tmp_path, VIEW)
    assert isinstance(store, SQLiteViewStore)
    store._db.execute("PRAGMA query_only = ON")  # every write: SQLITE_READONLY
    stalls: list[str] = []
    runner = ViewRunner(
        settings,
        VIEW,
        store,
        codec,
        topics=(topic,),
        group_id=topic + "-ro",
        until_caught_up=True,
        on_stall=stalls.append,
    )
    started = time.monotonic()
    with pytest.raises(StoreError, match="readonly") as caught:
        runner.run()
    assert time.monotonic() - started < 60
    chain: BaseException | None = caught.value
    while chain is not None:
        assert not isinstance(chain, AssertionError)
        chain = chain.__context__
    assert applied(store) == 0 and stalls == []
    store.close()
