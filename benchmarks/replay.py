"""Replay benchmark: how fast a view is rebuilt from the log, against its live build rate.

For each view, on one pre-produced topic (default 2,000,000 events), in one run:
  live     a fresh consumer group builds the view from the whole log (`logstream consume`);
  replay   `backfill --to-earliest --execute`, then the same group replays everything
           (the state is wiped and rebuilt; the result must equal the live build);
  rebuild  `logstream rebuild`: a new version (own group, own store) built from the earliest
           offset while a client queries the current version through a `logstream ingest`
           server in its own process (20 requests/s); every query must be answered.
Target: replay and rebuild at least 0.9x the live rate; no failed query.

    make bench-replay            # or: python benchmarks/replay.py --events 2000000
Uses LOGSTREAM_BENCH_BOOTSTRAP if set, else starts a private broker.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from _common import (  # also puts the repo on sys.path
    bench_broker,
    create_topic,
    delete_topics,
    free_port_block,
)

from consumers import VIEWS
from logstream.backfill.execute import execute_plan, make_plan
from logstream.backfill.kafka_state import KafkaState
from logstream.backfill.targets import Mode, Target
from logstream.codec import Codec
from logstream.gc_tuning import freeze_startup_heap
from logstream.runtime import ViewRunner
from logstream.schemas import SchemaCatalogue
from logstream.settings import Settings
from logstream.stores.base import ViewStore
from logstream.stores.factory import open_view_store
from logstream.versions import VersionRegistry
from logstream.view import View

TARGET_RATIO = 0.9
QUERY_RATE_HZ = 20.0


def _build(
    settings: Settings, view: View, store: ViewStore, codec: Codec, group: str, topic: str
) -> dict[str, float]:
    runner = ViewRunner(
        settings, view, store, codec, group_id=group, topics=(topic,), until_caught_up=True
    )
    freeze_startup_heap()  # as `logstream consume` and `rebuild` do
    started = time.perf_counter()
    result = runner.run()
    seconds = time.perf_counter() - started
    if not result.caught_up:
        raise RuntimeError(f"{group} did not catch up")
    return {
        "events": result.events_applied,
        "seconds": seconds,
        "events_per_s": result.events_applied / seconds,
    }


def _query_while(stop: threading.Event, settings: Settings, view: View) -> dict[str, Any]:
    """Query the current version through a real `logstream ingest` server (its own process,
    as in production) at QUERY_RATE_HZ until `stop`; count failures."""
    import httpx

    port = free_port_block(1)
    env = {
        **os.environ,
        "LOGSTREAM_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "LOGSTREAM_DATA_DIR": str(settings.data_dir),
        "LOGSTREAM_TOPIC_PREFIX": settings.topic_prefix,
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "logstream", "ingest", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    paths = {
        "likes-by-url": ("/v1/views/likes-by-url", {"url": "https://example.com/page/0"}),
        "likes-by-user": ("/v1/views/likes-by-user", {"user_id": "user-1"}),
        "likes-by-window": (
            "/v1/views/likes-by-window",
            {"size": "1h", "since": "2025-12-30T00:00:00Z", "until": "2026-01-06T00:00:00Z"},
        ),
    }
    path, params = paths[view.name]
    answered = failed = 0
    latencies: list[float] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:  # wait until the server answers
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("ingest server did not start")
                time.sleep(0.2)
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    ok = client.get(path, params=params).status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                answered += ok
                failed += not ok
                stop.wait(max(0.0, 1 / QUERY_RATE_HZ - (time.perf_counter() - started)))
    finally:
        server.terminate()
        server.wait(timeout=30)
    latencies.sort()
    p99 = latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan")
    return {"answered": answered, "failed": failed, "p99_ms": p99 * 1000}


def bench_view(bootstrap: str, topic: str, view: View, codec: Codec) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"replay-{view.name}-"))
    # The prefix makes the API's freshness read the bench topic (`<tag>-likes`).
    settings = Settings(
        bootstrap_servers=bootstrap, data_dir=data_dir, topic_prefix=topic.removesuffix("likes")
    )
    group = f"{topic}-{view.name}"
    store = open_view_store(None, data_dir, view)
    print(f"  {view.name}: live build ...", file=sys.stderr, flush=True)
    live = _build(settings, view, store, codec, group, topic)
    live_rows = store.bucket_rows()

    print(
        f"  {view.name}: backfill --to-earliest --execute, replay ...", file=sys.stderr, flush=True
    )
    with KafkaState(settings) as kafka:
        plan = make_plan(
            view,
            Target(Mode.TO_EARLIEST, "--to-earliest"),
            [],
            positions=store.positions(),
            log=kafka,
            group_id=group,
            topics=(topic,),
        )
        execute_plan(plan, store=store, kafka=kafka)
    replay = _build(settings, view, store, codec, group, topic)
    replay["exact"] = store.bucket_rows() == live_rows

    print(
        f"  {view.name}: rebuild as a new version while querying ...", file=sys.stderr, flush=True
    )
    version = VersionRegistry(settings).create_next(view.name)
    namespace = VersionRegistry.namespace(view.name, version)
    new_store = open_view_store(None, data_dir, view, namespace)
    stop = threading.Event()
    queries: dict[str, Any] = {}
    poller = threading.Thread(
        target=lambda: queries.update(_query_while(stop, settings, view)), daemon=True
    )
    poller.start()
    time.sleep(3)  # the server is up before the rebuild starts
    try:
        rebuild = _build(settings, view, new_store, codec, f"{group}@{version}", topic)
    finally:
        stop.set()
        poller.join(timeout=60)
    rebuild["exact"] = new_store.bucket_rows() == live_rows
    rebuild["queries"] = queries
    store.close()
    new_store.close()
    return {"view": view.name, "live": live, "replay": replay, "rebuild": rebuild}


def warm_up(bootstrap: str, topic: str) -> None:
    """Read the topic once in a throwaway group, so that the first measured build does not
    pay for the broker's first group coordination or a cold page cache."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-warm-up",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen, idle = 0, 0
    while idle < 5:
        batch = consumer.consume(10_000, timeout=1.0)
        seen += len(batch)
        idle = idle + 1 if not batch else 0
    consumer.commit(asynchronous=False)
    consumer.close()


def produce(bootstrap: str, topic: str, events: int) -> float:
    import views as views_bench  # the views benchmark's parallel, partition-split producer

    return float(views_bench.produce(bootstrap, topic, events)["events_per_s"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--views", nargs="*", default=list(VIEWS))
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    codec = Codec(SchemaCatalogue.load(Settings().resolved_schema_dir))
    tag = f"bench-replay-{uuid.uuid4().hex[:8]}"
    with bench_broker() as (bootstrap, _started):
        topic = f"{tag}-likes"
        create_topic(bootstrap, topic, 6)
        try:
            produce(bootstrap, topic, args.events)
            warm_up(bootstrap, topic)
            results = [bench_view(bootstrap, topic, VIEWS[name], codec) for name in args.views]
        finally:
            delete_topics(bootstrap, tag)
    report = {"events": args.events, "results": results}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    print(
        f"\n{'view':<16}{'live ev/s':>12}{'replay ev/s':>13}{'ratio':>7}{'rebuild ev/s':>14}"
        f"{'ratio':>7}{'queries ok/failed':>19}{'exact':>7}"
    )
    for r in results:
        live, replay, rebuild = r["live"], r["replay"], r["rebuild"]
        q = rebuild["queries"]
        print(
            f"{r['view']:<16}{live['events_per_s']:>12,.0f}{replay['events_per_s']:>13,.0f}"
            f"{replay['events_per_s'] / live['events_per_s']:>7.2f}"
            f"{rebuild['events_per_s']:>14,.0f}"
            f"{rebuild['events_per_s'] / live['events_per_s']:>7.2f}"
            f"{str(q.get('answered')) + '/' + str(q.get('failed')):>19}"
            f"{replay['exact'] and rebuild['exact']!s:>7}"
        )
    for r in results:
        for run in ("replay", "rebuild"):
            ratio = r[run]["events_per_s"] / r["live"]["events_per_s"]
            verdict = "PASS" if ratio >= TARGET_RATIO else "MISS"
            print(f"{verdict} {r['view']} {run} >= {TARGET_RATIO}x live ({ratio:.2f})")
        failed = r["rebuild"]["queries"].get("failed", 1)
        print(
            f"{'PASS' if failed == 0 else 'MISS'} {r['view']} queries during rebuild "
            f"all answered ({failed} failed)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
