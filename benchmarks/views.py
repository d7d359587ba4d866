"""Views benchmark: `make bench-views` (or `python benchmarks/views.py [--events N]`).

What it answers: how fast the consumer runtime builds each view compared with what a Python
consumer can do at all on this machine, and with the closest Python peer (Quix Streams).

Setup (not measured, but reported): N like events (default 2,000,000; skewed URLs, 1M users,
out-of-order and late event times over 4 days) are written with the real codec to a fresh
6-partition topic, key = url, record timestamp = occurred_at, by two producer processes.

Measured on that same topic, each run as a fresh consumer group in its own process (so the
peak RSS reported is that run's own):
1. "raw": confluent-kafka `consume(num_messages=...)` + `Codec.decode`, no store: the ceiling.
   It runs first and last; the mean is the reference and a >15% spread is flagged as noise.
2. each view alone through `ViewRunner` (SQLite store in a temporary folder, until caught up);
   then, to measure what metrics cost, once more with metrics off and once more with them
   on (on, off, on: the mean of the two on runs against the off run; target >= 0.95;
   `--no-metrics-cost` skips these two runs);
3. the three views at once, one process each (wall-clock events/s per view and aggregate);
4. "quix": Quix Streams computing the same per-URL 1-minute tumbling count (Codec-based
   deserializer, `tumbling_window(60_000).count().final()`, key = url), on a prefix of the
   topic when N is large (it is much slower; events/s stay comparable).
5. the example view (examples/pageviews: distinct visitors + summed seconds on page +
   latest referrer per page per hour, with totals) on its own topic of `--example-events`
   page_view events (default N; 1,000 skewed pages, 50,000 visitors, float seconds, 20
   referrers or null, 4 days), between two raw consume+decode runs of that topic, which are
   its reference. The example is imported from examples/pageviews/src (put on sys.path,
   not installed) and its schema folder is added to the codec's.
Then query latency (p50/p99) on stores holding 1,000,000 distinct URLs, filled directly
through `store.commit` (the same path the runtime uses), and optionally (`--profile`) a
cProfile of one view run, consume thread and commit thread separately.

Broker: LOGSTREAM_BENCH_BOOTSTRAP if set, else a private local broker on free ports in a
temporary folder. Other LOGSTREAM_* variables (e.g. LOGSTREAM_CONSUME_BATCH_SIZE) reach
the runs, so a tuning can be compared. Every view run has the metrics hooks and port that
`logstream consume --metrics-port` attaches, but the metrics-off runs of step 2 (which
measure what metrics cost). With metrics on, each view run is also scraped as Prometheus
would, every `LOGSTREAM_BENCH_SCRAPE_INTERVAL_S` (default 1 s; a scrape computes the view's
lag from its store and the broker), so the scrapes' cost is part of the measurement.
Prints a readable table and then a JSON document; exits 0 whether or not the targets are
met (PASS/MISS is printed per target).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # the benchmarks folder is on sys.path, not a package
    BASE_MS,
    DAY_MS,
    REPO,
    LikeStream,
    PageViewStream,
    bench_broker,
    create_topic,
    delete_topics,
    partition_of,
    peak_rss_mb,
    percentile,
)

VIEW_NAMES = ("likes-by-url", "likes-by-user", "likes-by-window")
EXAMPLE_VIEW = "page-views"
EXAMPLE_SRC = REPO / "examples" / "pageviews" / "src"
EXAMPLE_SCHEMAS = EXAMPLE_SRC / "pageviews" / "schemas"
TARGET_EXAMPLE_VS_RAW = 0.50
# What each stream's producers write: the event type (codec) and the generator.
STREAMS = {"likes": ("like", LikeStream), "page_views": ("page_views", PageViewStream)}
PARTITIONS = 6
PRODUCERS = 2
RAW_NOISE = 0.15
TARGET_VS_RAW = 0.60
TARGET_VS_QUIX = 3.0
TARGET_METRICS_ON_VS_OFF = 0.95
QUIX_GRACE_MS = 2 * DAY_MS + 10 * 60_000  # the stream's worst lateness: Quix counts all of it
CHILD_TIMEOUT_S = 1800
RESULT_MARK = "BENCH-RESULT "


# ----- child side: one measured run per process ------------------------------------------------
def _emit(result: dict[str, Any]) -> None:
    """The child's answer: one marked JSON line (libraries may log to stdout too)."""
    result.setdefault("rss_mb", round(peak_rss_mb(), 1))
    print(RESULT_MARK + json.dumps(result), flush=True)


def _settings(bootstrap: str, data_dir: Path | None = None) -> Any:
    from logstream.settings import load_settings

    if data_dir is None:
        return load_settings(bootstrap_servers=bootstrap)
    return load_settings(bootstrap_servers=bootstrap, data_dir=data_dir)


def _codec(settings: Any) -> Any:
    """The configured schemas plus the example's (`page_view`), as LOGSTREAM_SCHEMA_DIR
    naming both folders would give."""
    from logstream.codec import Codec
    from logstream.schemas import SchemaCatalogue

    folders = f"{settings.resolved_schema_dir}{os.pathsep}{EXAMPLE_SCHEMAS}"
    return Codec(SchemaCatalogue.load(folders))


def _view(name: str) -> Any:
    """A built-in view, or the example's (imported from its source folder, not installed:
    an installed entry point would register it for every process using the shared venv)."""
    if name == EXAMPLE_VIEW:
        if str(EXAMPLE_SRC) not in sys.path:
            sys.path.insert(0, str(EXAMPLE_SRC))
        from pageviews.views import page_views

        return page_views
    from consumers import VIEWS

    return VIEWS[name]


def child_produce(args: argparse.Namespace) -> None:
    """Write this worker's partitions of the stream as ingest would (key = url, timestamp =
    occurred_at, acks=all, idempotent), but batched hard: it is setup, only timed."""
    from confluent_kafka import Producer

    from logstream.kafka.config import producer_config

    settings = _settings(args.bootstrap)
    encode = _codec(settings).encode
    event_type, stream = STREAMS[args.stream]
    producer = Producer(
        producer_config(
            settings,
            **{
                "linger.ms": 50,
                "batch.size": 1_000_000,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 1_000_000,
                "queue.buffering.max.kbytes": 1_048_576,
            },
        )
    )
    failures: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    started = time.perf_counter()
    sent = 0
    for event in stream(args.events).events():
        key = event["url"].encode()
        partition = partition_of(key, PARTITIONS)
        if partition % args.workers != args.worker:
            continue  # another producer's partition
        value = encode(event_type, event)
        while True:
            try:
                producer.produce(
                    args.topic,
                    key=key,
                    value=value,
                    partition=partition,
                    timestamp=event["occurred_at"],
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                producer.poll(0.05)
        sent += 1
        if sent % 20_000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    _emit(
        {
            "events": sent,
            "seconds": time.perf_counter() - started,
            "undelivered": left,
            "failures": len(failures),
            "first_failure": failures[0] if failures else None,
        }
    )


def child_raw(args: argparse.Namespace) -> None:
    """The ceiling: the same consumer settings and batch size as the runtime, decode only."""
    from confluent_kafka import Consumer, KafkaError

    from logstream.gc_tuning import freeze_startup_heap
    from logstream.kafka.config import consumer_config

    settings = _settings(args.bootstrap)
    decode = _codec(settings).decode
    batch = settings.consume_batch_size
    freeze_startup_heap()  # as `logstream consume` does: same process tuning for both
    wall_start = time.time()
    started = time.perf_counter()
    consumer = Consumer(consumer_config(settings, args.group))
    consumer.subscribe([args.topic])
    seen = 0
    idle_since = time.monotonic()
    try:
        while seen < args.events:
            messages = consumer.consume(num_messages=batch, timeout=0.5)
            if not messages:
                if time.monotonic() - idle_since > 60:
                    break  # the topic holds fewer messages than expected: report, don't hang
                continue
            idle_since = time.monotonic()
            for msg in messages:
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(error.str())
                decode(msg.value())
                seen += 1
        seconds = time.perf_counter() - started
    finally:
        consumer.close()
    _emit(
        {
            "events": seen,
            "seconds": seconds,
            "wall_start": wall_start,
            "wall_end": wall_start + seconds,
        }
    )


def child_view(args: argparse.Namespace) -> None:
    """One view built from scratch by the real runtime into a fresh SQLite store."""
    from logstream.gc_tuning import freeze_startup_heap
    from logstream.metrics.hooks import ConsumerHooks
    from logstream.runtime.runner import ViewRunner
    from logstream.stores.factory import open_view_store

    view = _view(args.view)
    with tempfile.TemporaryDirectory(prefix="logstream-bench-view-") as tmp:
        settings = _settings(args.bootstrap, Path(tmp))
        # On or off as the run asks, whatever LOGSTREAM_METRICS says: the comparison needs both.
        settings = settings.model_copy(update={"metrics": args.metrics == "on"})
        codec = _codec(settings)
        store = open_view_store(None, settings.data_dir, view)
        # What `logstream consume --metrics-port` attaches (LOGSTREAM_METRICS=false: nothing);
        # its lag reads the run's topic (`<tag>-likes`: the prefix `<tag>-` before `likes`).
        prefix = args.topic[: -len(view.topics[0])] if args.topic.endswith(view.topics[0]) else ""
        hooks = ConsumerHooks(
            settings.model_copy(update={"topic_prefix": prefix}), view, "v1", port=0
        )
        try:
            runner = ViewRunner(
                settings,
                view,
                store,
                codec,
                topics=(args.topic,),
                group_id=args.group,
                until_caught_up=True,
                on_progress=hooks.on_progress(),
                on_commit=hooks.on_commit,
            )
            hooks.start(lambda: runner.result)
            scraper = Scraper(hooks.port if hooks.enabled else None)
            freeze_startup_heap()  # what `logstream consume` does before running
            wall_start = time.time()
            started = time.perf_counter()
            scraper.start()
            try:
                result = runner.run()
            finally:
                scrapes = scraper.stop()
            seconds = time.perf_counter() - started
        finally:
            hooks.stop()
            store.close()
        db_bytes = sum(f.stat().st_size for f in Path(tmp).rglob("*.sqlite*"))
    _emit(
        {
            "events": result.events_applied,
            "seconds": seconds,
            "wall_start": wall_start,
            "wall_end": wall_start + seconds,
            "flushes": result.flushes,
            "dead_letters": result.dead_letters,
            "fenced": result.fenced,
            "caught_up": result.caught_up,
            "store_mb": round(db_bytes / 2**20, 1),
            "scrapes": scrapes,
        }
    )


class Scraper:
    """GET /metrics of the view's port every LOGSTREAM_BENCH_SCRAPE_INTERVAL_S (default 1 s)
    while the view runs, as Prometheus would; nothing when metrics are off."""

    def __init__(self, port: int | None) -> None:
        self._url = f"http://127.0.0.1:{port}/metrics" if port else None
        self._interval = float(os.environ.get("LOGSTREAM_BENCH_SCRAPE_INTERVAL_S", "1"))
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)
        self.scrapes = 0

    def start(self) -> None:
        if self._url is not None:
            self._thread.start()

    def stop(self) -> int:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        return self.scrapes

    def _run(self) -> None:
        import urllib.request

        assert self._url is not None
        while not self._stopped.wait(self._interval):
            with urllib.request.urlopen(self._url, timeout=10) as response:
                response.read()
            self.scrapes += 1


def child_quix(args: argparse.Namespace) -> None:
    """Quix Streams computing likes-by-window's per-URL 1-minute tumbling count.

    Same input: the record timestamp is the event time and the key is the URL (Quix groups
    windows by message key). The grace period covers the stream's lateness so that, like our
    view, it counts late events instead of dropping them. Its defaults otherwise (RocksDB
    state, changelog topic, at-least-once): that is how it is run in production.
    """
    import logging

    from quixstreams import Application
    from quixstreams.models.serializers import Deserializer

    logging.getLogger("quixstreams").setLevel(logging.WARNING)
    settings = _settings(args.bootstrap)
    codec = _codec(settings)

    class CodecDeserializer(Deserializer):
        """Decode the value with our codec, like the runtime does (record dict only)."""

        def __init__(self) -> None:
            super().__init__()
            self._decode = codec.decode

        def __call__(self, value: bytes, ctx: Any) -> Any:
            return self._decode(value)[1]

    limit = args.events
    seen = 0
    late = 0
    windows_out = 0
    with tempfile.TemporaryDirectory(prefix="logstream-bench-quix-") as tmp:
        app = Application(
            broker_address=args.bootstrap,
            consumer_group=args.group,
            auto_offset_reset="earliest",
            state_dir=Path(tmp) / "state",
            loglevel="WARNING",
        )
        topic = app.topic(
            args.topic, key_deserializer="str", value_deserializer=CodecDeserializer()
        )
        sdf = app.dataframe(topic)

        def count(_value: Any) -> None:
            nonlocal seen
            seen += 1
            if seen >= limit:
                app.stop()

        def on_late(*_args: Any, **_kwargs: Any) -> bool:
            nonlocal late
            late += 1
            return False  # don't log: a log line per late event would slow Quix unfairly

        def emitted(_value: Any) -> None:
            nonlocal windows_out
            windows_out += 1

        sdf = sdf.update(count)
        sdf = sdf.tumbling_window(60_000, grace_ms=QUIX_GRACE_MS, on_late=on_late).count().final()
        sdf = sdf.update(emitted)
        wall_start = time.time()
        started = time.perf_counter()
        app.run()
        seconds = time.perf_counter() - started
    _emit(
        {
            "events": seen,
            "seconds": seconds,
            "wall_start": wall_start,
            "wall_end": wall_start + seconds,
            "late_dropped": late,
            "windows_emitted": windows_out,
        }
    )


# ----- query latency ----------------------------------------------------------------------------
def _fill_query_stores(url_store: Any, window_store: Any, urls: int, seed: int) -> dict[str, Any]:
    """Give `urls` distinct URLs likes over 4 days, Zipf-like (URL i gets 1 + K/(i+1) likes,
    about 2 likes per URL in all), and commit them as the runtime would: aggregated deltas in
    Flush batches, hourly buckets plus totals for likes-by-url, minute buckets per URL and
    for all URLs for likes-by-window. Chunks of URLs keep memory bounded."""
    from logstream.stores.base import Counter, Flush
    from logstream.view import HOUR_MS, MINUTE_MS

    rng = random.Random(seed)
    span = 4 * DAY_MS
    heavy = urls / 14.4  # sum(1/(i+1)) over 1M URLs is about 14.4: ~1 extra like per URL
    chunk = 50_000
    events = 0
    rows = 0
    started = time.perf_counter()
    for lo in range(0, urls, chunk):
        by_url: dict[tuple[str, str, int], Counter] = {}
        by_window: dict[tuple[str, str, int], Counter] = {}
        max_ms = BASE_MS
        for i in range(lo, min(urls, lo + chunk)):
            url = f"https://example.com/q/{i}"
            for _ in range(1 + int(heavy / (i + 1))):
                ts = BASE_MS + rng.randrange(span)
                max_ms = max(max_ms, ts)
                for deltas, key in (
                    (by_url, ("url", url, ts - ts % HOUR_MS)),
                    (by_window, ("w", url, ts - ts % MINUTE_MS)),
                    (by_window, ("all", "", ts - ts % MINUTE_MS)),
                ):
                    counter = deltas.get(key)
                    if counter is None:
                        deltas[key] = Counter.of(ts)
                    else:
                        counter.merge(1, ts)
                events += 1
        url_store.commit(Flush(by_url, [], max_ms))
        window_store.commit(Flush(by_window, [], max_ms))
        rows += len(by_url) + len(by_window)
    return {"events": events, "bucket_rows": rows, "fill_seconds": time.perf_counter() - started}


def _timed(calls: int, fn: Callable[[int], object]) -> dict[str, float]:
    """p50/p99/mean in milliseconds of `calls` calls of fn(i)."""
    samples: list[float] = []
    for i in range(calls):
        t0 = time.perf_counter_ns()
        fn(i)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    samples.sort()
    return {
        "calls": calls,
        "p50_ms": round(percentile(samples, 0.50), 3),
        "p99_ms": round(percentile(samples, 0.99), 3),
        "mean_ms": round(statistics.fmean(samples), 3),
    }


def child_query(args: argparse.Namespace) -> None:
    """Store-level query latency over a million distinct URLs (what a GET costs minus HTTP),
    and the same GETs through the read router when it can be built without a broker."""
    from consumers import VIEWS
    from logstream.stores.factory import open_view_store
    from logstream.view import HOUR_MS

    url_view, window_view = VIEWS["likes-by-url"], VIEWS["likes-by-window"]
    rng = random.Random(5)
    out: dict[str, Any] = {"urls": args.urls}
    with tempfile.TemporaryDirectory(prefix="logstream-bench-query-") as tmp:
        data_dir = Path(tmp)
        url_store = open_view_store(None, data_dir, url_view, url_view.name)
        window_store = open_view_store(None, data_dir, window_view, window_view.name)
        try:
            out.update(_fill_query_stores(url_store, window_store, args.urls, seed=3))
            picks = [f"https://example.com/q/{rng.randrange(args.urls)}" for _ in range(2000)]
            span_end = BASE_MS + 4 * DAY_MS
            hours = [BASE_MS + rng.randrange(96) * HOUR_MS for _ in range(20)]
            out["lookup_url"] = _timed(2000, lambda i: url_store.total("url", picks[i]))
            out["top10"] = _timed(200, lambda i: url_store.top("url", 10))
            out["top10_1h_range"] = _timed(
                20, lambda i: url_store.top("url", 10, hours[i], hours[i] + HOUR_MS)
            )
            out["windows_url_1h"] = _timed(
                200,
                lambda i: window_store.windows("w", picks[i], HOUR_MS, BASE_MS, span_end, 100),
            )
            out["windows_all_1d"] = _timed(
                50,
                lambda i: window_store.windows("all", "", DAY_MS, BASE_MS, span_end, 10),
            )
        finally:
            url_store.close()
            window_store.close()
        out["http"] = _http_latency(data_dir, picks, args.bootstrap)
        out["store_mb"] = round(
            sum(f.stat().st_size for f in data_dir.rglob("*.sqlite*")) / 2**20, 1
        )
    _emit(out)


def _http_latency(data_dir: Path, picks: list[str], bootstrap: str) -> dict[str, Any]:
    """The same reads as GETs through the read router (FastAPI TestClient, in process), so
    the cost of HTTP, validation and the freshness block shows next to the bare query.

    Best effort: the router is mounted the way the app mounts it; if that changes shape, the
    store-level numbers still stand and the reason is reported here instead.
    """
    try:
        from fastapi import FastAPI
        from fastapi.testclient import TestClient

        from ingest_api.routes.views import router
        from ingest_api.view_readers import ViewReaders
        from logstream.settings import load_settings

        settings = load_settings(bootstrap_servers=bootstrap, data_dir=data_dir)
        app = FastAPI()
        app.include_router(router)
        app.state.settings = settings
        readers = ViewReaders(settings)
        app.state.view_readers = readers
        since, until = BASE_MS, BASE_MS + 4 * DAY_MS
        try:
            with TestClient(app) as client:

                def get(path: str, params: dict[str, Any]) -> None:
                    response = client.get(path, params=params)
                    if response.status_code != 200:
                        raise RuntimeError(f"GET {path}: {response.status_code} {response.text}")

                get("/v1/views/likes-by-url", {"url": picks[0]})  # open stores, warm caches
                lookups = _timed(500, lambda i: get("/v1/views/likes-by-url", {"url": picks[i]}))
                top = _timed(100, lambda i: get("/v1/views/likes-by-url/top", {"limit": 10}))
                windows = _timed(
                    100,
                    lambda i: get(
                        "/v1/views/likes-by-window",
                        {"size": "1h", "url": picks[i], "since": since, "until": until},
                    ),
                )
        finally:
            readers.close()
    except Exception as exc:  # optional measurement: say why it is missing, don't fail
        return {"skipped": f"{type(exc).__name__}: {exc}"}
    return {"lookup_url": lookups, "top10": top, "windows_url_1h": windows}


# ----- profile ----------------------------------------------------------------------------------
class _ProfiledStore:
    """A store proxy timing (and optionally profiling) `commit` on the committer thread,
    which a cProfile enabled on the consume thread would not see (one thread per profiler)."""

    def __init__(self, store: Any, *, profile: bool) -> None:
        self._store = store
        self.profile = cProfile.Profile() if profile else None
        self.commit_seconds = 0.0

    def commit(self, flush: Any) -> None:
        started = time.perf_counter()
        if self.profile is not None:
            self.profile.enable()
        try:
            self._store.commit(flush)
        finally:
            if self.profile is not None:
                self.profile.disable()
            self.commit_seconds += time.perf_counter() - started

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _top_lines(profile: cProfile.Profile, lines: int) -> str:
    buffer = io.StringIO()
    stats = pstats.Stats(profile, stream=buffer)
    stats.strip_dirs().sort_stats("tottime").print_stats(lines)
    text = buffer.getvalue()
    start = text.find("   ncalls")
    return text[start:] if start >= 0 else text


def _instrumented_run(args: argparse.Namespace, group: str, *, profile: bool) -> dict[str, Any]:
    """One view run over the first `args.events` messages, in process.

    With `profile`, cProfile on both threads (its overhead inflates per-call Python work, so
    read it for ranking). Without, per-phase wall time instead: the runner's `_apply`,
    `_flush` and `_caught_up` are wrapped on the instance (benchmark instrumentation only),
    the rest of the loop is `consume()` plus start-up (group join, end offsets).
    """
    from logstream.runtime.runner import ViewRunner
    from logstream.stores.factory import open_view_store

    view = _view(args.view)
    # "flush" includes waiting for the in-flight commit; "caught_up" the end-offset checks.
    phases = {"apply": 0.0, "flush": 0.0, "caught_up checks": 0.0}

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                phases[name] += time.perf_counter() - t0

        return wrapper

    with tempfile.TemporaryDirectory(prefix="logstream-bench-profile-") as tmp:
        settings = _settings(args.bootstrap, Path(tmp))
        store = open_view_store(None, settings.data_dir, view)
        proxy = _ProfiledStore(store, profile=profile)
        seen = 0
        runner: ViewRunner | None = None

        def progress(batch: int) -> None:
            nonlocal seen
            seen += batch
            if seen >= args.events and runner is not None:
                runner.stop()

        runner = ViewRunner(
            settings,
            view,
            proxy,
            _codec(settings),
            topics=(args.topic,),
            group_id=group,
            until_caught_up=True,
            on_progress=progress,
        )
        if not profile:
            runner._apply = timed("apply", runner._apply)  # type: ignore[method-assign]
            runner._flush = timed("flush", runner._flush)  # type: ignore[method-assign]
            runner._caught_up = timed("caught_up checks", runner._caught_up)  # type: ignore[method-assign]
        consume_profile = cProfile.Profile()
        started = time.perf_counter()
        if profile:
            consume_profile.enable()
        result = runner.run()
        if profile:
            consume_profile.disable()
        seconds = time.perf_counter() - started
        store.close()
    out: dict[str, Any] = {
        "events": result.events_applied,
        "seconds": seconds,
        "flushes": result.flushes,
        "commit_thread_seconds": proxy.commit_seconds,
    }
    if profile:
        out["consume_thread_top"] = _top_lines(consume_profile, args.lines)
        assert proxy.profile is not None
        out["commit_thread_top"] = _top_lines(proxy.profile, args.lines)
    else:
        phases["consume + start-up (rest)"] = seconds - sum(phases.values())
        out["phases"] = {name: round(value, 3) for name, value in phases.items()}
    return out


def child_profile(args: argparse.Namespace) -> None:
    """Where a view run spends its time: a phase timing without profiler overhead, then a
    cProfile of both threads (each as a fresh group over the same prefix of the topic)."""
    timed_run = _instrumented_run(args, f"{args.group}-timed", profile=False)
    profiled = _instrumented_run(args, f"{args.group}-cprofile", profile=True)
    profiled["view"] = args.view
    profiled["timed_run"] = timed_run
    _emit(profiled)


# ----- parent side ------------------------------------------------------------------------------
class _Child:
    """One measured run in its own interpreter. Output goes to files, not pipes, so a chatty
    child can never stall on a full pipe while the parent waits for a sibling."""

    def __init__(self, label: str, kind: str, **options: Any) -> None:
        self.label = label
        argv = [sys.executable, str(Path(__file__).resolve()), "--child", kind]
        for name, value in options.items():
            argv += [f"--{name.replace('_', '-')}", str(value)]
        self._out = tempfile.TemporaryFile("w+")  # noqa: SIM115  (closed in close())
        self._err = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self._proc = subprocess.Popen(argv, cwd=REPO, stdout=self._out, stderr=self._err, text=True)

    def result(self) -> dict[str, Any]:
        """Wait for the child and return its marked JSON line (RuntimeError with its log)."""
        try:
            self._proc.wait(timeout=CHILD_TIMEOUT_S)
            self._out.seek(0)
            self._err.seek(0)
            stdout, stderr = self._out.read(), self._err.read()
        finally:
            self.close()
        for line in reversed(stdout.splitlines()):
            if line.startswith(RESULT_MARK):
                result: dict[str, Any] = json.loads(line[len(RESULT_MARK) :])
                result["label"] = self.label
                if "seconds" in result:
                    seconds = result["seconds"]
                    result["events_per_s"] = result["events"] / seconds if seconds else 0.0
                return result
        tail = "\n".join((stderr + stdout).splitlines()[-30:])
        raise RuntimeError(f"{self.label} failed (exit {self._proc.returncode}):\n{tail}")

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._out.close()
        self._err.close()


def _run_all(children: list[_Child]) -> list[dict[str, Any]]:
    """Results of children started together; all are reaped even if one fails."""
    try:
        return [child.result() for child in children]
    finally:
        for child in children:
            child.close()


def run_child(label: str, kind: str, **options: Any) -> dict[str, Any]:
    print(f"  running {label} ...", file=sys.stderr, flush=True)
    (result,) = _run_all([_Child(label, kind, **options)])
    if "seconds" in result:
        print(
            f"  {label}: {result['events']:,} events in {result['seconds']:.1f} s "
            f"= {result['events_per_s']:,.0f}/s, peak RSS {result['rss_mb']:.0f} MB",
            file=sys.stderr,
            flush=True,
        )
    return result


def run_metrics_cost(
    name: str, first_on: dict[str, Any], tag: str, common: dict[str, Any]
) -> dict[str, Any]:
    """What metrics cost a view: a run with them off, then one with them on again, right
    after its "alone" run (on): on, off, on, so a machine drifting one way between runs
    does not pass for the cost; the mean of both on runs is compared with the off run."""
    off = run_child(
        f"{name} metrics off", "view", group=f"{tag}-{name}-off", view=name, metrics="off", **common
    )
    on_again = run_child(
        f"{name} alone (2nd)", "view", group=f"{tag}-{name}-on2", view=name, **common
    )
    on_rate = statistics.fmean([first_on["events_per_s"], on_again["events_per_s"]])
    return {
        "off": off,
        "on_again": on_again,
        "on_events_per_s": on_rate,
        "on_vs_off": on_rate / off["events_per_s"],
    }


def run_concurrent(bootstrap: str, topic: str, tag: str) -> dict[str, Any]:
    """The three views at once, one process each; wall time from the first start to the
    last finish (interpreter start-up excluded, as in the single runs)."""
    print("  running all three views at once ...", file=sys.stderr, flush=True)
    results = _run_all(
        [
            _Child(
                f"{name} (concurrent)",
                "view",
                bootstrap=bootstrap,
                topic=topic,
                view=name,
                group=f"{tag}-all-{name}",
            )
            for name in VIEW_NAMES
        ]
    )
    wall = max(r["wall_end"] for r in results) - min(r["wall_start"] for r in results)
    events = sum(r["events"] for r in results)
    for r in results:
        print(
            f"  {r['label']}: {r['events_per_s']:,.0f}/s, peak RSS {r['rss_mb']:.0f} MB",
            file=sys.stderr,
            flush=True,
        )
    return {
        "per_view": results,
        "wall_seconds": wall,
        "aggregate_events_per_s": events / wall,
        "per_view_wall_events_per_s": (events / len(results)) / wall,
    }


def run_example(bootstrap: str, tag: str, events: int) -> dict[str, Any]:
    """The example view on its own page_view topic, between two raw runs of that topic."""
    topic = f"{tag}-page_views"
    create_topic(bootstrap, topic, PARTITIONS)
    out: dict[str, Any] = {"topic": topic, "events": events}
    out["produce"] = produce(bootstrap, topic, events, stream="page_views")
    common = {"bootstrap": bootstrap, "topic": topic, "events": events}
    out["raw_first"] = run_child("page_views raw (1st)", "raw", group=f"{tag}-pvraw1", **common)
    out["view"] = run_child(
        f"{EXAMPLE_VIEW} alone", "view", group=f"{tag}-pv", view=EXAMPLE_VIEW, **common
    )
    out["raw_last"] = run_child("page_views raw (2nd)", "raw", group=f"{tag}-pvraw2", **common)
    return out


def produce(bootstrap: str, topic: str, events: int, stream: str = "likes") -> dict[str, Any]:
    print(f"  producing {events:,} events to {topic} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    parts = _run_all(
        [
            _Child(
                f"produce-{worker}",
                "produce",
                bootstrap=bootstrap,
                topic=topic,
                events=events,
                worker=worker,
                workers=PRODUCERS,
                stream=stream,
            )
            for worker in range(PRODUCERS)
        ]
    )
    seconds = time.perf_counter() - started
    bad = [p for p in parts if p["undelivered"] or p["failures"]]
    if bad:
        raise RuntimeError(f"produce failed: {bad}")
    if sum(p["events"] for p in parts) != events:
        raise RuntimeError(f"producers wrote {[p['events'] for p in parts]}, expected {events}")
    in_topic = _topic_size(bootstrap, topic)
    if in_topic != events:
        raise RuntimeError(f"topic holds {in_topic} messages, expected {events}")
    print(f"  produced in {seconds:.1f} s ({events / seconds:,.0f}/s)", file=sys.stderr, flush=True)
    return {"events": events, "seconds": seconds, "events_per_s": events / seconds}


def _topic_size(bootstrap: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex}"})
    try:
        total = 0
        for partition in range(PARTITIONS):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=30, cached=False
            )
            total += high - low
        return total
    finally:
        consumer.close()


def _verdict(value: float, target: float) -> str:
    return "PASS" if value >= target else "MISS"


def summarize(report: dict[str, Any]) -> None:
    """Ratios and verdicts, added to the report in place."""
    runs = report["runs"]
    raw_rates = [runs["raw_first"]["events_per_s"], runs["raw_last"]["events_per_s"]]
    raw = statistics.fmean(raw_rates)
    spread = abs(raw_rates[0] - raw_rates[1]) / max(raw_rates)
    quix = runs["quix"]["events_per_s"]
    report["raw_events_per_s"] = raw
    report["raw_spread"] = spread
    report["raw_noise_warning"] = spread > RAW_NOISE
    # A run that stopped short (or a view that dead-lettered events) makes its rate meaningless.
    measured = [runs[k] for k in ("raw_first", "raw_last", *VIEW_NAMES)]
    measured += report["concurrent"]["per_view"]
    for cost in report.get("metrics_cost", {}).values():
        measured += [cost["off"], cost["on_again"]]
    report["incomplete_runs"] = [
        r["label"] for r in measured if r["events"] != report["events"] or r.get("dead_letters")
    ]
    example = report.get("example")
    if example:
        ex_rates = [example["raw_first"]["events_per_s"], example["raw_last"]["events_per_s"]]
        example["raw_events_per_s"] = statistics.fmean(ex_rates)
        example["raw_spread"] = abs(ex_rates[0] - ex_rates[1]) / max(ex_rates)
        example["vs_raw"] = example["view"]["events_per_s"] / example["raw_events_per_s"]
        report["incomplete_runs"] += [
            example[k]["label"]
            for k in ("raw_first", "view", "raw_last")
            if example[k]["events"] != example["events"] or example[k].get("dead_letters")
        ]
    targets = []
    for name in VIEW_NAMES:
        rate = runs[name]["events_per_s"]
        vs_raw, vs_quix = rate / raw, rate / quix
        runs[name]["vs_raw"] = vs_raw
        runs[name]["vs_quix"] = vs_quix
        for target, value, goal in (
            (f">= {TARGET_VS_RAW:.2f} x raw", vs_raw, TARGET_VS_RAW),
            (f">= {TARGET_VS_QUIX:.1f} x quix", vs_quix, TARGET_VS_QUIX),
        ):
            verdict = _verdict(value, goal)
            targets.append({"view": name, "target": target, "value": value, "verdict": verdict})
    for name, cost in report.get("metrics_cost", {}).items():
        value = cost["on_vs_off"]
        targets.append(
            {
                "view": name,
                "target": f">= {TARGET_METRICS_ON_VS_OFF:.2f} x metrics off",
                "value": value,
                "verdict": _verdict(value, TARGET_METRICS_ON_VS_OFF),
            }
        )
    for r in report["concurrent"]["per_view"]:
        r["vs_raw"] = r["events_per_s"] / raw
        r["vs_quix"] = r["events_per_s"] / quix
    if example:
        targets.append(
            {
                "view": EXAMPLE_VIEW,
                "target": f">= {TARGET_EXAMPLE_VS_RAW:.2f} x raw",
                "value": example["vs_raw"],
                "verdict": _verdict(example["vs_raw"], TARGET_EXAMPLE_VS_RAW),
            }
        )
    report["targets"] = targets


def print_table(report: dict[str, Any]) -> None:
    runs = report["runs"]
    raw = report["raw_events_per_s"]
    env = report["environment"]
    out = sys.stdout
    print("\nlogstream views benchmark", file=out)
    print(
        f"  {report['events']:,} events, {PARTITIONS} partitions, {env['cpus']} CPUs, "
        f"load avg before {env['load_before']} / after {env['load_after']}, "
        f"broker: {env['broker']}",
        file=out,
    )
    produced = report["produce"]
    print(
        f"  setup: produced in {produced['seconds']:.1f} s ({produced['events_per_s']:,.0f}/s, "
        f"{PRODUCERS} producer processes, lz4, acks=all)\n",
        file=out,
    )
    columns = (("events", 11), ("sec", 8), ("events/s", 11), ("x raw", 8), ("x quix", 8))
    header = f"{'run':<34}" + "".join(f"{c:>{w}}" for c, w in columns) + f"{'RSS MB':>8}"
    print(header, file=out)
    print("-" * len(header), file=out)

    def row(label: str, r: dict[str, Any], vs: bool = True) -> None:
        ratio_raw = f"{r['events_per_s'] / raw:.2f}" if vs else ""
        ratio_quix = f"{r['events_per_s'] / runs['quix']['events_per_s']:.1f}" if vs else ""
        print(
            f"{label:<34}{r['events']:>11,}{r['seconds']:>8.1f}{r['events_per_s']:>11,.0f}"
            f"{ratio_raw:>8}{ratio_quix:>8}{r['rss_mb']:>8.0f}",
            file=out,
        )

    row("raw consume+decode (1st)", runs["raw_first"])
    row("raw consume+decode (2nd)", runs["raw_last"])
    for name in VIEW_NAMES:
        row(f"{name} alone", runs[name])
        cost = report.get("metrics_cost", {}).get(name)
        if cost:
            row(f"{name} metrics off", cost["off"])
            row(f"{name} alone (2nd)", cost["on_again"])
    for r in report["concurrent"]["per_view"]:
        row(r["label"], r)
    conc = report["concurrent"]
    print(
        f"{'all three: wall':<34}{3 * report['events']:>11,}{conc['wall_seconds']:>8.1f}"
        f"{conc['aggregate_events_per_s']:>11,.0f}   (aggregate; per view "
        f"{conc['per_view_wall_events_per_s']:,.0f}/s = "
        f"{conc['per_view_wall_events_per_s'] / raw:.2f} x raw)",
        file=out,
    )
    quix_label = "quix streams 1m tumbling count"
    if runs["quix"]["events"] < report["events"]:
        quix_label += " *"
    row(quix_label, runs["quix"])
    if runs["quix"]["events"] < report["events"]:
        print(
            f"  * Quix measured on the first {runs['quix']['events']:,} messages of the same "
            "topic (count limit); events/s is comparable.",
            file=out,
        )
    noise = "  ** NOISE WARNING: raw runs differ by > 15% **" if report["raw_noise_warning"] else ""
    print(
        f"\nraw reference = mean of both raw runs = {raw:,.0f}/s; "
        f"spread {report['raw_spread']:.0%}{noise}",
        file=out,
    )
    example = report.get("example")
    if example:
        ex_raw = example["raw_events_per_s"]
        print(
            f"\nexample view ({example['events']:,} page_view events on their own topic; "
            f"x raw against that topic's raw runs):",
            file=out,
        )
        print(header.replace("  x quix", "        "), file=out)
        for label, key in (
            ("page_views raw (1st)", "raw_first"),
            ("page_views raw (2nd)", "raw_last"),
            (f"{EXAMPLE_VIEW} alone", "view"),
        ):
            r = example[key]
            print(
                f"{label:<34}{r['events']:>11,}{r['seconds']:>8.1f}{r['events_per_s']:>11,.0f}"
                f"{r['events_per_s'] / ex_raw:>8.2f}{'':>8}{r['rss_mb']:>8.0f}",
                file=out,
            )
        spread = example["raw_spread"]
        warning = "  ** NOISE WARNING: raw runs differ by > 15% **" if spread > RAW_NOISE else ""
        print(f"  raw reference {ex_raw:,.0f}/s; spread {spread:.0%}{warning}", file=out)
    if report["incomplete_runs"]:
        print(f"  ** INCOMPLETE runs: {', '.join(report['incomplete_runs'])} **", file=out)
    print("\ntargets (each view alone):", file=out)
    for t in report["targets"]:
        print(f"  {t['verdict']}  {t['view']:<16} {t['target']:<14} got {t['value']:.2f}", file=out)
    if example:
        print("  (page-views: its own topic's raw runs are its reference)", file=out)
    query = report.get("query")
    if query:
        print(
            f"\nquery latency, {query['urls']:,} distinct URLs ({query['events']:,} likes, "
            f"{query['bucket_rows']:,} bucket rows in the two stores, "
            f"filled in {query['fill_seconds']:.0f} s, "
            f"stores {query['store_mb']:.0f} MB, peak RSS {query['rss_mb']:.0f} MB):",
            file=out,
        )
        print(f"  {'query':<48}{'calls':>7}{'p50 ms':>9}{'p99 ms':>9}", file=out)
        names = {
            "lookup_url": "store.total(url)        GET likes-by-url?url=",
            "top10": "store.top(10)           GET .../top?limit=10",
            "top10_1h_range": "store.top(10, 1h range) GET .../top?since&until",
            "windows_url_1h": "store.windows(url, 1h, 4 days)",
            "windows_all_1d": "store.windows(all URLs, 1d, 4 days)",
        }
        for key, label in names.items():
            q = query[key]
            print(f"  {label:<48}{q['calls']:>7}{q['p50_ms']:>9.3f}{q['p99_ms']:>9.3f}", file=out)
        http = query.get("http", {})
        if "skipped" in http:
            print(f"  HTTP: skipped ({http['skipped']})", file=out)
        else:
            for key, q in http.items():
                label = f"HTTP TestClient {key}"
                line = f"{q['calls']:>7}{q['p50_ms']:>9.3f}{q['p99_ms']:>9.3f}"
                print(f"  {label:<48}{line}", file=out)
    profile = report.get("profile")
    if profile:
        print(
            f"\nprofile of {profile['view']} over {profile['events']:,} events "
            f"({profile['seconds']:.1f} s; commit thread busy "
            f"{profile['commit_thread_seconds']:.1f} s)",
            file=out,
        )
        timed = profile["timed_run"]
        print(
            f"  without profiler: {timed['events']:,} events in {timed['seconds']:.1f} s "
            f"({timed['events'] / timed['seconds']:,.0f}/s), {timed['flushes']} flushes; "
            f"commit thread busy {timed['commit_thread_seconds']:.1f} s; consume thread:",
            file=out,
        )
        for name, value in timed["phases"].items():
            print(f"    {name:<36}{value:>8.2f} s", file=out)
        print("consume thread (tottime):\n" + profile["consume_thread_top"], file=out)
        print("commit thread (tottime):\n" + profile["commit_thread_top"], file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2_000_000, help="events to pre-produce")
    parser.add_argument(
        "--quix-events",
        type=int,
        default=300_000,
        help="Quix Streams runs on at most this many messages (0: all)",
    )
    parser.add_argument(
        "--query-urls",
        type=int,
        default=1_000_000,
        help="distinct URLs for query latency (0: skip)",
    )
    parser.add_argument("--profile", action="store_true", help="also cProfile one view run")
    parser.add_argument(
        "--no-metrics-cost",
        dest="metrics_cost",
        action="store_false",
        help="skip the runs with metrics off (each view: on, off, on again) that measure "
        "what metrics cost",
    )
    parser.add_argument(
        "--example-events",
        type=int,
        default=None,
        help="page_view events for the example view (default: --events; 0: skip it)",
    )
    parser.add_argument(
        "--profile-view", default="likes-by-url", choices=(*VIEW_NAMES, EXAMPLE_VIEW)
    )
    parser.add_argument("--profile-events", type=int, default=300_000)
    parser.add_argument("--json", type=Path, help="also write the JSON report to this file")
    # child-only options
    parser.add_argument("--child", help=argparse.SUPPRESS)
    for name in ("bootstrap", "topic", "group", "view"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    parser.add_argument("--stream", default="likes", choices=STREAMS, help=argparse.SUPPRESS)
    parser.add_argument("--metrics", default="on", choices=("on", "off"), help=argparse.SUPPRESS)
    for name in ("worker", "workers", "urls", "lines"):
        parser.add_argument(f"--{name}", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    children = {
        "produce": child_produce,
        "raw": child_raw,
        "view": child_view,
        "quix": child_quix,
        "query": child_query,
        "profile": child_profile,
    }
    if args.child:
        children[args.child](args)
        return 0

    n = args.events
    tag = f"bench-views-{uuid.uuid4().hex[:8]}"
    topic = f"{tag}-likes"
    report: dict[str, Any] = {"events": n, "topic": topic, "runs": {}}
    env: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }
    started = time.perf_counter()
    with bench_broker() as (bootstrap, private):
        env["broker"] = "private local broker" if private else bootstrap
        try:
            create_topic(bootstrap, topic, PARTITIONS)
            report["produce"] = produce(bootstrap, topic, n)
            runs = report["runs"]
            common = {"bootstrap": bootstrap, "topic": topic, "events": n}
            runs["raw_first"] = run_child("raw (1st)", "raw", group=f"{tag}-raw1", **common)
            for name in VIEW_NAMES:
                runs[name] = run_child(
                    f"{name} alone", "view", group=f"{tag}-{name}", view=name, **common
                )
                if args.metrics_cost:
                    report.setdefault("metrics_cost", {})[name] = run_metrics_cost(
                        name, runs[name], tag, common
                    )
            report["concurrent"] = run_concurrent(bootstrap, topic, tag)
            quix_n = min(n, args.quix_events) if args.quix_events else n
            runs["quix"] = run_child(
                "quix", "quix", bootstrap=bootstrap, topic=topic, events=quix_n, group=f"{tag}-quix"
            )
            runs["raw_last"] = run_child("raw (2nd)", "raw", group=f"{tag}-raw2", **common)
            example_n = n if args.example_events is None else args.example_events
            if example_n > 0:
                report["example"] = run_example(bootstrap, tag, example_n)
            if args.query_urls > 0:
                report["query"] = run_child(
                    "query latency", "query", bootstrap=bootstrap, urls=args.query_urls
                )
            if args.profile:
                example = args.profile_view == EXAMPLE_VIEW
                if example and "example" not in report:
                    raise SystemExit("error: --profile-view page-views needs --example-events > 0")
                report["profile"] = run_child(
                    "profile",
                    "profile",
                    bootstrap=bootstrap,
                    topic=report["example"]["topic"] if example else topic,
                    group=f"{tag}-profile",
                    view=args.profile_view,
                    events=min(report["example"]["events"] if example else n, args.profile_events),
                    lines=15,
                )
        finally:
            if not private:
                delete_topics(bootstrap, tag)
    env["load_after"] = [round(x, 2) for x in os.getloadavg()]
    env["total_seconds"] = round(time.perf_counter() - started, 1)
    report["environment"] = env
    summarize(report)
    print_table(report)
    document = json.dumps(report, indent=2, default=str)
    print("\n" + document)
    if args.json:
        args.json.write_text(document)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
