"""An abusive key cannot crowd the others out: while one client floods the real server
(`logstream ingest`) from 8 connections with requests its key may not make, it gets no more
than its rate and 429s for the rest, and another key's writes all succeed with a p99
latency within `p99_bound_ms` of the same key's p99 measured just before without the flood
(same run, same machine load), both printed. (Without the tarpit in `ingest_api/access.py`
this p99 was 330 ms on our 2-core machines, against 21-74 ms without the flood.)"""

from __future__ import annotations

import json
import math
import os
import select
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from logstream.auth.keys import KeyFile
from logstream.kafka.admin import create_topics, make_admin
from logstream.settings import Settings
from logstream.topics import event_topic_specs, resolve_topics
from tests.integration.ingest_server import running_ingest

REPO = Path(__file__).resolve().parents[2]
ABUSER_RATE = 5
FLOOD_STARTED = "flooding"


def p99_bound_ms(baseline_p99_ms: float) -> float:
    """The flood may cost the polite key at most 100 ms and a doubling of its own p99: a
    shared 2-core machine slows both measurements alike, while the failure this guards
    against (no tarpit: 330 ms) stays above it for any baseline under 115 ms."""
    return 100.0 + 2.0 * baseline_p99_ms


FLOOD = textwrap.dedent(
    """
    import json, sys, threading, time, requests
    base, token, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    counts = {}
    lock = threading.Lock()
    def run():
        session = requests.Session()
        session.headers["Authorization"] = "Bearer " + token
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            like = {"url": "https://abuse.example/", "user_id": "a"}
            status = session.post(base + "/v1/events/likes", json=like).status_code
            with lock:
                counts[status] = counts.get(status, 0) + 1
                if status == 429 and counts[status] == 1:
                    print("flooding", flush=True)
    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    print(json.dumps(counts))
    """
)


@pytest.fixture
def server(kafka_bootstrap: str, tmp_path: Path, unique_name) -> Iterator[tuple[str, str, str]]:
    settings = Settings(
        bootstrap_servers=kafka_bootstrap,
        data_dir=tmp_path / "data",
        topic_prefix=unique_name("iso") + ".",
        topic_partitions=3,
    )
    create_topics(
        make_admin(settings),
        event_topic_specs(settings, list(resolve_topics(settings, ["likes"]))),
    )
    files = KeyFile(settings.resolved_auth_keys_file)
    _, abuser = files.create("abuser", ["write:likes"], requests_per_s=ABUSER_RATE)
    _, polite = files.create("polite", ["write:likes"])
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")},
        "PYTHONPATH": str(REPO),
        "LOGSTREAM_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LOGSTREAM_DATA_DIR": str(settings.data_dir),
        "LOGSTREAM_TOPIC_PREFIX": settings.topic_prefix,
    }
    with running_ingest(env) as base:
        yield base, abuser, polite


def wait_for_line(proc: subprocess.Popen[str], line: str, *, deadline_s: float) -> None:
    """Read `proc`'s stdout until `line` arrives; fail after `deadline_s`."""
    assert proc.stdout is not None
    deadline = time.monotonic() + deadline_s
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0 and proc.poll() is None, f"no {line!r} from the flood in time"
        ready, _, _ = select.select([proc.stdout], [], [], remaining)
        if ready and proc.stdout.readline().strip() == line:
            return


def test_an_abusive_key_gets_429_and_others_keep_their_latency(server) -> None:
    base, abuser, polite = server
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {polite}"

    def post() -> float:
        like = {"url": "https://polite.example/", "user_id": "p", "event_id": str(uuid.uuid4())}
        started = time.perf_counter()
        answer = session.post(f"{base}/v1/events/likes", json=like, timeout=30)
        took = (time.perf_counter() - started) * 1000
        assert answer.status_code in (202, 503), answer.text
        return took if answer.status_code == 202 else float("nan")

    deadline = time.monotonic() + 30
    while math.isnan(post()):  # a fresh producer may answer 503 at first
        assert time.monotonic() < deadline
    for _ in range(20):
        post()
    baseline = sorted(post() for _ in range(200))
    base_p99 = baseline[int(0.99 * len(baseline))]
    flood_s = 12.0
    flood = subprocess.Popen(
        [sys.executable, "-c", FLOOD, base, abuser, str(flood_s)],
        stdout=subprocess.PIPE,
        text=True,
    )
    wait_for_line(flood, FLOOD_STARTED, deadline_s=30)  # the flood is refused: full speed
    latencies = []
    stop = time.monotonic() + flood_s - 2.5
    while time.monotonic() < stop:
        latencies.append(post())
    flood.wait(timeout=60)
    assert flood.stdout is not None
    out = flood.stdout.read()  # the same buffered reader as wait_for_line's
    counts = {int(k): v for k, v in json.loads(out.strip().splitlines()[-1]).items()}
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    p50 = latencies[len(latencies) // 2]
    print(
        f"abuser statuses {counts}; polite key: {len(latencies)} writes, "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (without the flood: p99 {base_p99:.1f} ms)"
    )
    # 5 requests/s for the flood's seconds, plus a 2-second burst, plus the warm-up edge.
    assert counts.get(202, 0) <= ABUSER_RATE * (flood_s + 2 + 1), counts
    assert counts.get(429, 0) > 0, counts
    assert not any(math.isnan(x) for x in latencies)  # every polite write acknowledged
    assert p99 < p99_bound_ms(base_p99), (p50, p99, base_p99)
