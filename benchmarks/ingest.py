"""Ingest benchmark: `make bench-ingest` (or `python benchmarks/ingest.py [--duration S]`).

Measures, in one run and on the same server settings (uvicorn, 1 worker unless `--workers N`,
no access log; metrics on in the likes server, as `LOGSTREAM_METRICS` says in the others):
- single-event POST /v1/events/likes: requests/s, p50/p99 latency at concurrency 32 and 128;
- the same against ingest servers with metrics off (`LOGSTREAM_METRICS=false`): what metrics
  cost, measured in the same turns (target: metrics on within 5 % of off, for single events
  and batches). Each side is `--replicas` server processes (4), each measured `--duration`
  seconds: identical processes differ by up to ±5 % among themselves, lastingly (measured on
  a slower machine), more than metrics cost, so a side of one or two processes measures
  which processes it drew as much as the metrics; the table prints each side's range of
  per-process rates beside the ratio. Every
  metrics-on server is scraped (`GET /metrics`) every `--scrape-interval` seconds of its
  load, by default as often as the Prometheus we ship scrapes it
  (`deploy/prometheus/prometheus.yml`, 15 s), the first scrape in its first turn;
- the same against a no-op FastAPI POST endpoint (reads the body, answers 202): the
  framework's ceiling;
- the same for a generic event type that exists only as a schema file,
  `benchmarks/schemas/page_view.v1.avsc` (POST /v1/events/page_views: about the size of a
  like, with an enum), served by a second ingest with
  `LOGSTREAM_SCHEMA_DIR=avro_schemas:benchmarks/schemas`; target: within 10% of likes;
- batches of 1,000 events: events/s (likes and page views, alternating);
- a raw encode-and-produce loop (codec + confluent-kafka, acks=all, no HTTP): the client's
  ceiling.
Prints a JSON document and a table with the ratios against the targets (single >= 60% of
no-op, batch >= 50% of raw loop).

CPU: the load generator reads each server's CPU time (every thread, its workers' too, from
the kernel's per-process clock) before and after each of its measured turns, so every
summary also has `cpu_us_per_request` and `requests_per_cpu_s`. The metrics cost is printed
both ways: `metrics_on_vs_off_*` compares rates, `metrics_on_vs_off_cpu_*` requests per
CPU-second.
Why both: a rate also moves with what the broker and the generator do on the same two cores
(one 1-s turn by ~5 %, a whole run's ratio by about ±2 % from run to run); the CPU time a
server spends per request is its own cost, and says whether a gap in rate is the server's.

Fairness on a small shared machine, where the speed of a core drifts by tens of percent
from one minute to the next:
- each measurement and its baseline alternate in short turns (`--slice`, 1 s: the no-op and
  the ingest server are both up and the load generator switches between them; batches and
  the raw loop alternate in rounds), so both see the same machine;
- the broker first gets `--broker-warmup` seconds of produce load: a fresh JVM runs
  interpreted for its first minute, which would be charged to whichever ran first.

Auth: `--auth` (or LOGSTREAM_BENCH_AUTH=1) runs ingest with an API key file and every request
carries `Authorization: Bearer <key>` (the no-op server gets the header too and ignores it);
the key's rate limits are set far above the load, so the access check and both token buckets
run on every request without refusing any. Compare a run with `--auth` to one without: the
target is within 10 %.

A/A: `--aa` runs both sides of the metrics comparison with metrics off (and scrapes neither):
the same two kinds of process, the same turns, so its `metrics_on_vs_off_*` ratios are what
the comparison moves by itself on this machine, the floor under which a gap is not metrics.

Broker: LOGSTREAM_BENCH_BOOTSTRAP if set, else a private local broker on free ports with its
data in a temporary folder (stopped at the end). Each server runs in its own process and the
load generator in another (a small keep-alive HTTP/1.1 client on uvloop, so the generator costs
less CPU than the server it measures). On a 2-core machine the broker, the server and the load
generator share the cores: absolute numbers are low, ratios are what to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from _common import REPO, free_port_block  # also puts the repo on sys.path
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

BATCH_SIZE = 1000
# A ratio's setting -> the key of its summaries. A batch's ratio of requests per second is
# that of events per second (1,000 events a request).
RATIO_SETTINGS = {"single_c32": "single_c32", "single_c128": "single_c128", "batch": "batch_1000"}
KEEP_ALIVE_SAFE_S = 3.0  # reconnect a target idle this long (servers close idle ones at 5 s)
BATCH_ROUND_S = 4.0  # batches and the raw loop alternate in rounds of at least this long
SERVERS = ("noop", "ingest", "generic", "metrics_off")
# The metrics comparison runs each side as several processes (`--replicas`): identical server
# processes differ by up to ±5 % among themselves for their whole life (measured: four
# metrics-off servers, five 8-s phases, -4.6 / +0.8 / +0.6 / +3.2 % from their mean), more
# than metrics cost; four a side halve that noise's variance against two.
REPLICATED = ("ingest", "metrics_off")
AUTH_KEYS_ENV = "LOGSTREAM_BENCH_AUTH_KEYS_FILE"  # set for the child processes by --auth
AUTH_TOKEN_ENV = "LOGSTREAM_BENCH_AUTH_TOKEN"
AA_ENV = "LOGSTREAM_BENCH_AA"  # set for the server processes by --aa
SCRAPE_TOKEN_ENV = "LOGSTREAM_BENCH_SCRAPE_TOKEN"  # an admin key: what a Prometheus server holds
PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
URLS = 1000  # distinct urls, hence keys, spread over the partitions
GENERIC_SCHEMAS = REPO / "benchmarks" / "schemas"
PATHS = {
    "noop": "/v1/events/likes",
    "ingest": "/v1/events/likes",
    "generic": "/v1/events/page_views",
    "metrics_off": "/v1/events/likes",
}


# ----- helpers ---------------------------------------------------------------------------------
def like(i: int) -> dict[str, Any]:
    return {"url": f"https://example.com/page/{i % URLS}", "user_id": f"user-{i % 977}"}


def page_view(i: int) -> dict[str, Any]:
    return {
        "url": f"https://example.com/page/{i % URLS}",
        "visitor_id": f"visitor-{i % 977}",
        "section": ("NEWS", "SPORT", "OTHER")[i % 3],
    }


def event_body(kind: str, i: int) -> dict[str, Any]:
    return page_view(i) if kind == "generic" else like(i)


def kind_of(target: str) -> str:
    """A target's server kind: `ingest#2` (a replica's name) is an `ingest` server."""
    return target.split("#", 1)[0]


def target_names(replicas: int) -> list[str]:
    """Every server process to start: one per kind, `replicas` per kind of `REPLICATED`."""
    return [
        f"{kind}#{n}" if kind in REPLICATED else kind
        for kind in SERVERS
        for n in range(1, (replicas if kind in REPLICATED else 1) + 1)
    ]


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


# ----- servers (run in child processes) -------------------------------------------------------
def aa_run() -> bool:
    """Whether this is an A/A run (`--aa`, passed to the child processes in the environment)."""
    return os.environ.get(AA_ENV) == "1"


def metrics_on_side(kind: str) -> bool:
    """Whether this side of the metrics comparison serves metrics: only the likes server, and
    not even that in an A/A run, which shows how far the comparison moves by itself."""
    return kind == "ingest" and not aa_run()


def serve(kind: str, port: int, bootstrap: str, topic: str) -> None:
    import uvicorn

    if kind in ("ingest", "generic", "metrics_off"):
        from ingest_api.app import create_app
        from logstream.settings import load_settings

        keys_file = os.environ.get(AUTH_KEYS_ENV)
        overrides: dict[str, Any] = {"auth_keys_file": Path(keys_file)} if keys_file else {}
        # The comparison needs one server with metrics and one without, whatever
        # LOGSTREAM_METRICS says (it still applies to the generic type's server).
        if kind in ("ingest", "metrics_off"):
            overrides["metrics"] = metrics_on_side(kind)
        settings = load_settings(bootstrap_servers=bootstrap, **overrides)
        if kind == "generic":  # the repo's schemas and the bench's own folder, side by side
            overrides["schema_dir"] = f"{settings.resolved_schema_dir}{os.pathsep}{GENERIC_SCHEMAS}"
            settings = load_settings(bootstrap_servers=bootstrap, **overrides)
        app: Any = create_app(settings, topic_overrides={"like": topic, "pageview": topic})
    else:
        app = FastAPI()

        @app.get("/healthz")
        async def healthz() -> dict[str, str]:
            return {"status": "ok"}

        @app.post("/v1/events/likes")
        async def noop(request: Request) -> JSONResponse:
            await request.body()
            return JSONResponse({"event_id": "x", "topic": topic, "partition": 0, "offset": 0}, 202)

    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")


class Served(NamedTuple):
    """A server process the benchmark started: where it listens, and its process id (its
    CPU time is read, with its workers', around every measured turn)."""

    port: int
    pid: int


@contextmanager
def server(kind: str, bootstrap: str, topic: str, workers: int = 1) -> Iterator[Served]:
    port = free_port_block(1)
    argv = [sys.executable, __file__, "--serve", kind, "--port", str(port)]
    argv += ["--bootstrap", bootstrap, "--topic", topic]
    env = None
    if kind in ("ingest", "metrics_off") and workers > 1:
        # Several workers: `logstream ingest` itself (a factory per worker, and the shared
        # multiprocess metrics folder), on the topic named `<prefix>likes`.
        argv = [sys.executable, "-m", "logstream", "ingest", "--port", str(port)]
        argv += ["--workers", str(workers)]
        env = {
            **os.environ,
            "LOGSTREAM_BOOTSTRAP_SERVERS": bootstrap,
            "LOGSTREAM_TOPIC_PREFIX": topic.removesuffix("likes"),
        }
        env["LOGSTREAM_METRICS"] = "true" if metrics_on_side(kind) else "false"
    proc = subprocess.Popen(argv, cwd=REPO, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} server did not start") from None
                time.sleep(0.2)
        yield Served(port, proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# ----- load generator (runs in a child process) -----------------------------------------------
async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


def process_cpu_seconds(pid: int) -> float:
    """A process's CPU time (all its threads) from the kernel's per-process clock, Linux's
    CPUCLOCK_SCHED of the pid: nanoseconds, where /proc's counters step by 10 ms, as much as
    what a server spends in a short turn (batch turns last 0.4 s)."""
    return time.clock_gettime(((~pid) << 3) | 2)


class _Target:
    """One server under load: its keep-alive connections and what was measured against it."""

    def __init__(self, name: str, port: int, pid: int, requests: list[bytes]) -> None:
        self.name = name
        self.port = port
        self.pid = pid
        self.pids: list[int] = []  # the server's process and its workers'
        self.cpu_s = 0.0  # the server's CPU time (all its threads) in measured turns
        self.requests = requests  # raw HTTP requests, sent in turn
        self.connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.busy_s = 0.0  # measured slice time
        self.idle_since = -math.inf  # when its last slice ended
        self.scrape_every_s = 0.0  # > 0: GET /metrics every this many seconds of busy time
        self.scrapes = 0
        self.slice_rates: list[float] = []  # answered 2xx per second, one per measured turn

    def answered_ok(self) -> int:
        return sum(count for status, count in self.statuses.items() if 200 <= status < 300)

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far, all threads, its workers' included."""
        if not self.pids:  # its workers are up once it answered
            import psutil

            children = psutil.Process(self.pid).children(recursive=True)
            self.pids = [self.pid, *(child.pid for child in children)]
        try:
            return sum(process_cpu_seconds(pid) for pid in self.pids)
        except OSError:
            raise RuntimeError(f"a process of server {self.name} exited during the run") from None

    def summary(self) -> dict[str, Any]:
        self.latencies.sort()
        ok = self.answered_ok()
        return {
            "requests": len(self.latencies),
            "ok": ok,
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "seconds": self.busy_s,
            "requests_per_s": ok / self.busy_s if self.busy_s else 0.0,
            "p50_ms": percentile(self.latencies, 0.50) * 1000,
            "p99_ms": percentile(self.latencies, 0.99) * 1000,
            "scrapes": self.scrapes,
            "slice_rates": self.slice_rates,
            "cpu_s": self.cpu_s,
        }

    async def scrape(self) -> None:
        """One Prometheus-style scrape of the server's `/metrics` (its own connection)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        token = os.environ.get(SCRAPE_TOKEN_ENV)
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        request = f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"
        writer.write(request.encode())
        await reader.read()  # until the server closes
        writer.close()
        self.scrapes += 1


def _requests(path: str, bodies: list[bytes]) -> list[bytes]:
    token = os.environ.get(AUTH_TOKEN_ENV)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return [
        (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"{auth}Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body in bodies
    ]


async def _load(
    targets: list[_Target],
    concurrency: int,
    warmup: float,
    duration: float,
    slice_s: float,
) -> dict[str, Any]:
    """Load the targets in turn, `slice_s` seconds each, until each had `duration` seconds.

    Interleaving short slices makes the comparison fair on a shared machine whose speed
    drifts by tens of percent over minutes: every target sees the same conditions. A slice
    ends when the last of its requests is answered; its rate counts the whole slice.
    """
    clock = time.perf_counter  # uvloop's loop.time() ticks in whole milliseconds

    async def connect(target: _Target) -> None:
        """(Re)open the target's keep-alive connections: a server closes idle ones after
        its keep-alive timeout (uvicorn: 5 s), which a target waiting for the others to
        take their turns can reach. Not in the turn's time (a client reuses its
        connections); the server accepts them, and closes the old ones, during the turn, so
        that work is in its CPU time, on both sides of every comparison alike."""
        for _, writer in target.connections:
            writer.close()
        target.connections = [
            await asyncio.open_connection("127.0.0.1", target.port) for _ in range(concurrency)
        ]

    async def worker(target: _Target, n: int, stop_at: float, measured: bool) -> None:
        reader, writer = target.connections[n]
        requests = target.requests
        i = n
        while True:
            sent = clock()
            if sent >= stop_at:
                return
            writer.write(requests[i % len(requests)])
            status = await _read_response(reader)
            if measured:
                target.latencies.append(clock() - sent)
                target.statuses[status] = target.statuses.get(status, 0) + 1
            i += concurrency

    async def run_slice(target: _Target, seconds: float, measured: bool) -> None:
        if clock() - target.idle_since > KEEP_ALIVE_SAFE_S:
            await connect(target)
        cpu_before = target.cpu_seconds() if measured else 0.0
        start, ok_before = clock(), target.answered_ok()
        work = [worker(target, n, start + seconds, measured) for n in range(concurrency)]
        # Scrapes fall due by the target's own measured time, so their cost lands on it.
        every = target.scrape_every_s
        if measured and every and target.busy_s >= target.scrapes * every:
            work.append(target.scrape())
        await asyncio.gather(*work)
        target.idle_since = clock()
        if measured:
            target.busy_s += clock() - start
            target.slice_rates.append((target.answered_ok() - ok_before) / (clock() - start))
            target.cpu_s += target.cpu_seconds() - cpu_before

    for target in targets:  # warm each server (and the broker behind it) up
        await run_slice(target, warmup, measured=False)
    orders = balanced_orders(len(targets))
    rounds = max(1, round(duration / slice_s))
    if rounds >= len(orders):  # every order equally often
        rounds = math.ceil(rounds / len(orders)) * len(orders)
    for r in range(rounds):
        for index in orders[r % len(orders)]:
            await run_slice(targets[index], duration / rounds, measured=True)
    for target in targets:
        for _, writer in target.connections:
            writer.close()
    return {target.name: target.summary() for target in targets}


def balanced_orders(n: int) -> list[list[int]]:
    """Turn orders in which every target follows every other equally often (a Williams
    design: n orders for even n, 2n for odd n). A slice can inherit the broker work its
    predecessor left behind, so no target may mostly follow one that produces nothing."""
    first = [0]
    for step in range(1, n):
        first.append((step + 1) // 2 if step % 2 else n - step // 2)
    orders = [[(x + r) % n for x in first] for r in range(n)]
    return orders if n % 2 == 0 else orders + [order[::-1] for order in orders]


def load_main(
    targets: list[str],
    mode: str,
    concurrency: int,
    warmup: float,
    duration: float,
    slice_s: float,
    scrape_every_s: float,
) -> None:
    import uvloop

    parsed: list[_Target] = []
    for name, port, pid in (t.split("=") for t in targets):
        kind = kind_of(name)
        if mode == "batch":
            path = PATHS[kind] + "/batch"
            bodies = [
                json.dumps(
                    [event_body(kind, b * BATCH_SIZE + i) for i in range(BATCH_SIZE)]
                ).encode()
                for b in range(8)
            ]
        else:
            path = PATHS[kind]
            bodies = [json.dumps(event_body(kind, i)).encode() for i in range(URLS)]
        target = _Target(name, int(port), int(pid), _requests(path, bodies))
        if kind == "ingest":  # a server with metrics on (unless LOGSTREAM_METRICS=false)
            target.scrape_every_s = scrape_every_s
        parsed.append(target)
    result = uvloop.run(_load(parsed, concurrency, warmup, duration, slice_s))
    print(json.dumps(result))


def run_load(
    targets: dict[str, Served],
    mode: str,
    concurrency: int,
    warmup: float,
    duration: float,
    slice_s: float,
    scrape_every_s: float = 0.0,
) -> dict[str, Any]:
    """Measure `targets` (name -> server) interleaved, in a load-generator process; every
    "ingest" target is scraped every `scrape_every_s` seconds of its load (0: never)."""
    argv = [sys.executable, __file__, "--load", mode]
    argv += [f"--target={name}={port}={pid}" for name, (port, pid) in targets.items()]
    argv += ["--concurrency", str(concurrency), "--warmup", str(warmup)]
    argv += ["--duration", str(duration), "--slice", str(slice_s)]
    argv += ["--scrape-interval", str(scrape_every_s)]
    out = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"the load generator failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# ----- raw client ceiling (runs in a child process) -------------------------------------------
def raw_main(bootstrap: str, topic: str, warmup: float, duration: float) -> None:
    from confluent_kafka import Producer

    from logstream.codec import Codec
    from logstream.kafka.config import producer_config
    from logstream.schemas import SchemaCatalogue
    from logstream.settings import load_settings

    settings = load_settings(bootstrap_servers=bootstrap)
    codec = Codec(SchemaCatalogue.load(settings.resolved_schema_dir))
    producer = Producer(producer_config(settings))
    acked = [0]

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is None:
            acked[0] += 1

    start = time.monotonic()
    counted_from = 0
    measuring = False
    i = 0
    while True:
        now = time.monotonic()
        if not measuring and now >= start + warmup:
            producer.flush(30)
            counted_from, measuring, measure_start = acked[0], True, time.monotonic()
        if measuring and now >= measure_start + duration:
            break
        event = like(i)
        record = {
            "event_id": str(uuid.uuid4()),
            "url": event["url"],
            "user_id": event["user_id"],
            "occurred_at": int(time.time() * 1000),
        }
        try:
            producer.produce(
                topic,
                value=codec.encode("like", record),
                key=event["url"].encode(),
                timestamp=record["occurred_at"],
                on_delivery=on_delivery,
            )
        except BufferError:
            producer.poll(0.01)
            continue
        i += 1
        if i % 1000 == 0:
            producer.poll(0)
    producer.flush(30)
    elapsed = time.monotonic() - measure_start
    events = acked[0] - counted_from
    print(json.dumps({"events_per_s": events / elapsed, "events": events, "seconds": elapsed}))


def run_raw(bootstrap: str, topic: str, warmup: float, duration: float) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--raw", "--bootstrap", bootstrap, "--topic", topic]
    argv += ["--warmup", str(warmup), "--duration", str(duration)]
    out = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"the load generator failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# ----- orchestration ---------------------------------------------------------------------------
@contextmanager
def broker() -> Any:
    external = os.environ.get("LOGSTREAM_BENCH_BOOTSTRAP")
    if external:
        yield external
        return
    from logstream.broker.assemble import ensure_kafka_runtime
    from logstream.broker.local import LocalCluster
    from logstream.settings import load_settings

    settings = load_settings()
    runtime = ensure_kafka_runtime(settings.kafka_version, settings.kafka_cache_dir)
    with tempfile.TemporaryDirectory(prefix="logstream-bench-") as data:
        port = free_port_block(2)
        cluster = LocalCluster(runtime, Path(data), port=port, controller_port=port + 1, heap="1g")
        print(f"starting a private broker on 127.0.0.1:{port} ...", file=sys.stderr)
        cluster.start()
        try:
            yield cluster.bootstrap_servers
        finally:
            cluster.stop()


def make_topic(bootstrap: str) -> str:
    from logstream.kafka.admin import create_topics, make_admin
    from logstream.settings import load_settings
    from logstream.topics import event_topic_specs

    settings = load_settings(bootstrap_servers=bootstrap)
    topic = f"bench-{uuid.uuid4().hex[:8]}.likes"  # `logstream ingest`: prefix `bench-<hex>.`
    create_topics(make_admin(settings), event_topic_specs(settings, [topic], partitions=6))
    return topic


def enable_auth(folder: Path) -> None:
    """An API key file with one writer key whose limits the load never reaches; the child
    processes (servers, load generator) find both through the environment."""
    from logstream.auth.keys import KeyFile

    keys_file = folder / "keys.json"
    _, token = KeyFile(keys_file).create(
        "bench", ["write:likes", "write:page_views"], requests_per_s=1e9, events_per_s=1e12
    )
    _, scrape_token = KeyFile(keys_file).create("bench-scrape", ["admin"])
    os.environ[AUTH_KEYS_ENV] = str(keys_file)
    os.environ[AUTH_TOKEN_ENV] = token
    os.environ[SCRAPE_TOKEN_ENV] = scrape_token


def shipped_scrape_interval() -> float:
    """Seconds between scrapes in the Prometheus configuration we ship (its global
    `scrape_interval`), so that the benchmark charges metrics what a deployment pays."""
    import yaml

    from logstream.backfill.targets import parse_duration  # Prometheus's short form: 15s, 1m30s

    interval = str(yaml.safe_load(PROMETHEUS_CONFIG.read_text())["global"]["scrape_interval"])
    return parse_duration(interval) / 1000


def orchestrate(
    warmup: float,
    duration: float,
    slice_s: float,
    broker_warmup: float,
    workers: int,
    scrape_every_s: float,
    replicas: int,
) -> Any:
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "settings": {
            "warmup_s": warmup,
            "duration_s": duration,
            "slice_s": slice_s,
            "broker_warmup_s": broker_warmup,
            "batch_size": BATCH_SIZE,
            "ingest_workers": workers,
            "replicas": replicas,
            "scrape_interval_s": scrape_every_s,
            "metrics": os.environ.get("LOGSTREAM_METRICS", "true"),
            "auth": AUTH_TOKEN_ENV in os.environ,
            "aa": aa_run(),
        },
    }
    with ExitStack() as stack:
        bootstrap = stack.enter_context(broker())
        topic = make_topic(bootstrap)
        results["broker"] = bootstrap
        # A fresh JVM runs its first minute or so interpreted: warm it up like a broker that
        # has been serving for a while, or the first measurement pays for the JIT.
        print(f"warming the broker up ({broker_warmup:g} s) ...", file=sys.stderr)
        run_raw(bootstrap, topic, 0.0, broker_warmup)
        servers = {
            name: stack.enter_context(server(kind_of(name), bootstrap, topic, workers))
            for name in target_names(replicas)
        }
        for concurrency in (32, 128):
            print(f"single events, c={concurrency}, interleaved ...", file=sys.stderr)
            measured = run_load(
                servers, "single", concurrency, warmup, duration, slice_s, scrape_every_s
            )
            for kind in SERVERS:
                results[f"{kind}_single_c{concurrency}"] = _merge(_parts(measured, kind))
        # Batches and the raw loop alternate in rounds, for the same reason.
        rounds = max(1, round(duration / max(slice_s, BATCH_ROUND_S)))
        batch_parts: dict[str, list[dict[str, Any]]] = {k: [] for k in SERVERS if k != "noop"}
        raw_parts: list[dict[str, Any]] = []
        batching = {name: s for name, s in servers.items() if kind_of(name) in batch_parts}
        turns = len(balanced_orders(len(batching)))
        for r in range(rounds):
            print(f"batches and raw loop, round {r + 1}/{rounds} ...", file=sys.stderr)
            part = duration / rounds
            # Every balanced order of the servers once per round.
            measured = run_load(batching, "batch", 4, warmup, part, part / turns, scrape_every_s)
            for kind, parts in batch_parts.items():
                parts.extend(_parts(measured, kind))
            raw_parts.append(run_raw(bootstrap, topic, warmup, part))
        for kind, parts in batch_parts.items():
            results[f"{kind}_batch_1000"] = _merge(parts, BATCH_SIZE)
        raw_seconds = sum(p["seconds"] for p in raw_parts)
        results["raw_produce_loop"] = {
            "events_per_s": sum(p["events"] for p in raw_parts) / raw_seconds,
            "seconds": raw_seconds,
        }
    ratios = {
        f"single_c{c}_vs_noop": results[f"ingest_single_c{c}"]["requests_per_s"]
        / results[f"noop_single_c{c}"]["requests_per_s"]
        for c in (32, 128)
    }
    ratios["batch_vs_raw_loop"] = (
        results["ingest_batch_1000"]["events_per_s"] / results["raw_produce_loop"]["events_per_s"]
    )
    ratios |= _server_vs_server(results, "generic", "ingest", "generic_{}_vs_likes")
    ratios |= _server_vs_server(results, "ingest", "metrics_off", "metrics_on_vs_off_{}")
    ratios |= _server_vs_server(
        results, "ingest", "metrics_off", "metrics_on_vs_off_cpu_{}", "requests_per_cpu_s"
    )
    results["ratios"] = ratios
    return results


def _server_vs_server(
    results: dict[str, Any],
    kind: str,
    baseline: str,
    name: str,
    measure: str = "requests_per_s",
) -> dict[str, float]:
    """`kind`'s `measure` (a rate: more is better) over `baseline`'s, for single events at
    c=32 and c=128 and for batches, named `name` with `single_c32`, `single_c128` or
    `batch` filled in."""
    return {
        name.format(setting): results[f"{kind}_{key}"][measure]
        / results[f"{baseline}_{key}"][measure]
        for setting, key in RATIO_SETTINGS.items()
    }


def _parts(measured: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """What one load run measured of `kind`'s servers (its replicas), each named."""
    return [summary | {"name": name} for name, summary in measured.items() if kind_of(name) == kind]


def _merge(parts: list[dict[str, Any]], events_per_request: int = 1) -> dict[str, Any]:
    """One summary of several measurements of a kind (its replicas, its batch rounds): the
    rate of all of them together; percentiles: the median part's (of two, the slower by
    p50); each part's own rate (a replica's, or a replica's in one batch round)."""
    seconds = sum(p["seconds"] for p in parts)
    ok = sum(p["ok"] for p in parts)
    cpu_s = sum(p["cpu_s"] for p in parts)
    middle = sorted(parts, key=lambda p: p["p50_ms"])[len(parts) // 2]
    statuses: dict[str, int] = {}
    for part in parts:
        for status, count in part["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    return {
        "requests": sum(p["requests"] for p in parts),
        "ok": ok,
        "statuses": statuses,
        "seconds": seconds,
        "requests_per_s": ok / seconds,
        "events_per_s": ok * events_per_request / seconds,
        "p50_ms": middle["p50_ms"],
        "p99_ms": middle["p99_ms"],
        "scrapes": sum(p["scrapes"] for p in parts),
        "part_rates": [p["ok"] / p["seconds"] for p in parts],
        "process_rates": process_rates(parts),
        "slice_rates": [rate for p in parts for rate in p["slice_rates"]],  # part by part
        "cpu_s": cpu_s,
        # The server's own cost, less blurred by the cores it shares than its rate is:
        # requests answered per second of its CPU time (all its threads), and the inverse.
        "requests_per_cpu_s": ok / cpu_s if cpu_s else math.nan,  # nan: prints as a miss
        "cpu_us_per_request": cpu_s / ok * 1e6 if ok else math.nan,
    }


def process_rates(parts: list[dict[str, Any]]) -> dict[str, float]:
    """Each server process's rate (requests/s) over all of its parts (its batch rounds)."""
    totals: dict[str, list[float]] = {}
    for part in parts:
        ok_and_seconds = totals.setdefault(part["name"], [0.0, 0.0])
        ok_and_seconds[0] += part["ok"]
        ok_and_seconds[1] += part["seconds"]
    return {name: ok / seconds for name, (ok, seconds) in totals.items()}


def process_range(summary: dict[str, Any], events_per_request: int = 1) -> str:
    """The slowest and fastest process of a side, e.g. "1,375-1,533"."""
    rates = [rate * events_per_request for rate in summary["process_rates"].values()]
    return f"{min(rates):,.0f}-{max(rates):,.0f}"


def table(r: dict[str, Any]) -> str:
    rows = [("measurement", "rate", "p50 ms", "p99 ms", "cpu us/request")]
    for key in (
        "noop_single_c32",
        "ingest_single_c32",
        "metrics_off_single_c32",
        "generic_single_c32",
        "noop_single_c128",
        "ingest_single_c128",
        "metrics_off_single_c128",
        "generic_single_c128",
    ):
        m = r[key]
        rows.append(
            (
                key,
                f"{m['requests_per_s']:,.0f} req/s",
                f"{m['p50_ms']:.1f}",
                f"{m['p99_ms']:.1f}",
                f"{m['cpu_us_per_request']:,.1f}",
            )
        )
    for key in ("ingest_batch_1000", "metrics_off_batch_1000", "generic_batch_1000"):
        b = r[key]
        rows.append(
            (
                f"{key} (c=4)",
                f"{b['events_per_s']:,.0f} ev/s",
                f"{b['p50_ms']:.1f}",
                f"{b['p99_ms']:.1f}",
                f"{b['cpu_us_per_request']:,.0f}",
            )
        )
    rows.append(
        ("raw_produce_loop", f"{r['raw_produce_loop']['events_per_s']:,.0f} ev/s", "-", "-", "-")
    )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    targets = {
        "single_c32_vs_noop": 0.6,
        "single_c128_vs_noop": 0.6,
        "batch_vs_raw_loop": 0.5,
        "generic_single_c32_vs_likes": 0.9,
        "generic_single_c128_vs_likes": 0.9,
        "generic_batch_vs_likes": 0.9,
        "metrics_on_vs_off_single_c32": 0.95,
        "metrics_on_vs_off_single_c128": 0.95,
        "metrics_on_vs_off_batch": 0.95,
        "metrics_on_vs_off_cpu_single_c32": 0.95,
        "metrics_on_vs_off_cpu_single_c128": 0.95,
        "metrics_on_vs_off_cpu_batch": 0.95,
    }
    lines.append("")
    if r["settings"].get("aa"):
        lines.append("A/A run (--aa): the 'ingest' servers had metrics off too; the")
        lines.append("metrics_on_vs_off_* ratios are what the comparison moves by itself")
    for name, value in r["ratios"].items():
        verdict = "meets" if value >= targets[name] else "MISSES"
        lines.append(f"{name}: {value:.0%} ({verdict} target {targets[name]:.0%})")
    lines.append("")
    lines.append("metrics on / off, each side's slowest and fastest process (identical processes")
    lines.append("differ too: ranges that overlap say the gap is within that spread):")
    for setting, key in RATIO_SETTINGS.items():
        per_request, unit = (BATCH_SIZE, "ev/s") if key.startswith("batch") else (1, "req/s")
        on = process_range(r[f"ingest_{key}"], per_request)
        off = process_range(r[f"metrics_off_{key}"], per_request)
        lines.append(f"  {setting}: on {on}, off {off} {unit}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--duration", type=float, default=12.0, help="measured seconds per server and setting"
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument(
        "--slice", type=float, default=1.0, help="seconds per turn when servers alternate"
    )
    parser.add_argument(
        "--broker-warmup", type=float, default=20.0, help="seconds of produce load before measuring"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="ingest server worker processes (logstream ingest)"
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=4,
        help="server processes per side of the metrics on/off comparison (each measured "
        "--duration seconds)",
    )
    parser.add_argument(
        "--scrape-interval",
        type=float,
        default=None,
        help="GET /metrics of the metrics-on server every this many seconds of its load "
        "(0: never; default: the scrape_interval of deploy/prometheus/prometheus.yml)",
    )
    parser.add_argument(
        "--auth",
        action="store_true",
        default=os.environ.get("LOGSTREAM_BENCH_AUTH") == "1",
        help="ingest requires an API key, every request sends one (LOGSTREAM_BENCH_AUTH=1)",
    )
    parser.add_argument(
        "--aa",
        action="store_true",
        help="A/A run: both sides of the metrics on/off comparison with metrics off, neither "
        "scraped; its metrics_on_vs_off ratios show how far the comparison moves by itself "
        "on this machine",
    )
    parser.add_argument("--serve", choices=list(SERVERS), help=argparse.SUPPRESS)
    parser.add_argument("--load", choices=["single", "batch"], help=argparse.SUPPRESS)
    parser.add_argument("--target", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replicas < 1:
        parser.error("--replicas must be at least 1")
    if args.serve:
        serve(args.serve, args.port, args.bootstrap, args.topic)
    elif args.load:
        load_main(
            args.target,
            args.load,
            args.concurrency,
            args.warmup,
            args.duration,
            args.slice,
            args.scrape_interval or 0.0,
        )
    elif args.raw:
        raw_main(args.bootstrap, args.topic, args.warmup, args.duration)
    else:
        if args.auth:
            enable_auth(Path(tempfile.mkdtemp(prefix="bench-auth-")))
        if args.aa:
            os.environ[AA_ENV] = "1"
            args.scrape_interval = 0.0
        results = orchestrate(
            args.warmup,
            args.duration,
            args.slice,
            args.broker_warmup,
            args.workers,
            shipped_scrape_interval() if args.scrape_interval is None else args.scrape_interval,
            args.replicas,
        )
        print(json.dumps(results, indent=2))
        print(table(results))


if __name__ == "__main__":
    main()
