"""Failover in seconds: ingest answers 202 again within 3 s of a partition leader's SIGKILL.

Three local nodes, an event topic with replication factor 3 and min.insync.replicas=2, a
`logstream ingest` server, and one client loop per partition POSTing single likes whose
key lands on that partition. Two kills, SIGKILL each (no clean shutdown: the controller
learns of it only through missed broker heartbeats):
1. a partition leader (a broker); then `start()` brings back only that node and the test
   waits until it is in every ISR again;
2. the active KRaft controller (a dedicated controller process: from 3 nodes on, brokers
   and controllers are separate, so no broker's death forces a quorum election).

Measured per partition: unavailability = time from the kill to the answer of the first
request that was *sent after the kill* and got 202 (a request sent before the kill and
answered later says nothing about when writes work again). With 3 replicas on 3 nodes
every ISR holds the killed node, so every partition stalls until it is fenced: all
partitions are measured, the ones it led marked `*`. The worst per kill must be <= 3 s.
Measured on the 2-core machine with combined broker+controller nodes: 1.0-1.8 s (leader),
2.1-2.4 s (leader that was also the active controller; 3.3-3.6 s under the fault suite's
load), hence the dedicated controllers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from logstream.broker.local import LocalCluster
from logstream.kafka.admin import create_topics, make_admin
from logstream.settings import Settings
from logstream.topics import event_topic_specs
from tests.conftest import free_port_block, local_cluster

BOUND_S = 3.0
PARTITIONS = 6


@dataclass(frozen=True)
class Answer:
    partition: int
    sent: float
    answered: float
    status: int


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = local_cluster(tmp_path_factory.mktemp("cluster3"), heap="384m", nodes=3)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def ingest(cluster3: LocalCluster, unique_name, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A `logstream ingest` server on the cluster: (base URL, event topic)."""
    prefix = unique_name("fo") + "."
    settings = Settings(bootstrap_servers=cluster3.bootstrap_servers, topic_replication_factor=3)
    specs = event_topic_specs(settings, [f"{prefix}likes"], partitions=PARTITIONS)
    assert specs[0].replication_factor == 3 and specs[0].config["min.insync.replicas"] == "2"
    create_topics(make_admin(settings), specs, timeout_s=60)
    port = free_port_block(1)
    env = {
        **os.environ,
        "LOGSTREAM_BOOTSTRAP_SERVERS": cluster3.bootstrap_servers,
        "LOGSTREAM_TOPIC_PREFIX": prefix,
        "LOGSTREAM_DATA_DIR": str(tmp_path),
        "LOGSTREAM_INGEST_PORT": str(port),
    }
    with (tmp_path / "ingest.log").open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "logstream", "ingest"], env=env, stdout=log, stderr=log
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, (tmp_path / "ingest.log").read_text()
            assert time.monotonic() < deadline, "ingest not ready"
            time.sleep(0.2)
        yield base, f"{prefix}likes"
    finally:
        server.terminate()
        server.wait(30)


def url_per_partition(base: str) -> dict[int, str]:
    """One URL (Kafka key) per partition, learned from where ingest put it."""
    found: dict[int, str] = {}
    with httpx.Client(base_url=base, timeout=30) as client:
        for i in range(500):
            url = f"https://failover.example/{i}"
            response = client.post("/v1/events/likes", json={"url": url, "user_id": "u"})
            assert response.status_code == 202, response.text
            found.setdefault(response.json()["partition"], url)
            if len(found) == PARTITIONS:
                return found
    raise AssertionError(f"keys reached only partitions {sorted(found)}")


async def post_loop(
    client: httpx.AsyncClient, partition: int, url: str, stop: asyncio.Event, out: list[Answer]
) -> None:
    while not stop.is_set():
        sent = time.monotonic()
        try:
            status = (
                await client.post("/v1/events/likes", json={"url": url, "user_id": "u"})
            ).status_code
        except httpx.HTTPError:
            status = 0
        out.append(Answer(partition, sent, time.monotonic(), status))
        if status != 202:
            await asyncio.sleep(0.05)  # a client retrying after a 503, not a tight loop


def leaders(cluster: LocalCluster, topic: str) -> dict[int, int]:
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient({"bootstrap.servers": cluster.bootstrap_servers}).list_topics(
        topic, timeout=10
    )
    return {p: info.leader for p, info in metadata.topics[topic].partitions.items()}


def first_ok_after(answers: list[Answer], partition: int, killed_at: float) -> float | None:
    """Seconds from the kill to the first 202 of a request sent after it (None: never)."""
    ok = [
        a.answered
        for a in answers
        if a.partition == partition and a.sent >= killed_at and a.status == 202
    ]
    return min(ok) - killed_at if ok else None


async def run_and_kill(
    base: str, urls: dict[int, str], kill: Callable[[], float], watch: set[int]
) -> tuple[float, list[Answer]]:
    """Post in one loop per partition, call `kill` after 2 s of steady traffic, and stop
    once every partition in `watch` had a 202 after it (or 20 s passed)."""
    answers: list[Answer] = []
    stop = asyncio.Event()
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        tasks = [
            asyncio.create_task(post_loop(client, p, url, stop, answers)) for p, url in urls.items()
        ]
        await asyncio.sleep(2)  # steady state first
        killed_at = kill()
        deadline = killed_at + 20
        while time.monotonic() < deadline and any(
            first_ok_after(answers, p, killed_at) is None for p in watch
        ):
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*tasks)
    return killed_at, answers


def wait_full_isr(cluster: LocalCluster, topic: str, replicas: int, timeout_s: float) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    deadline = time.monotonic() + timeout_s
    while True:
        parts = admin.list_topics(topic, timeout=10).topics[topic].partitions.values()
        if all(len(p.isrs) == replicas for p in parts):
            return
        assert time.monotonic() < deadline, "the restarted node did not rejoin every ISR"
        time.sleep(0.2)


def kill_and_measure(
    cluster: LocalCluster, base: str, topic: str, urls: dict[int, str], victim: int, what: str
) -> float:
    """SIGKILL node `victim` under traffic; the worst per-partition unavailability."""
    pid = next(s.pid for s in cluster.status() if s.node_id == victim)
    assert pid is not None
    led = {p for p, node in leaders(cluster, topic).items() if node == victim}

    def kill() -> float:
        os.kill(pid, signal.SIGKILL)
        return time.monotonic()

    # With 3 replicas on 3 nodes every ISR holds the victim: every partition stalls until
    # it is fenced, so all partitions are watched, not only the ones it led.
    killed_at, answers = asyncio.run(run_and_kill(base, urls, kill, set(urls)))
    after = {p: first_ok_after(answers, p, killed_at) for p in sorted(urls)}
    failed = sum(1 for a in answers if a.sent >= killed_at - 1 and a.status != 202)
    print(
        f"\n{what}: killed node {victim}, leader of partitions {sorted(led)}; seconds from the "
        "kill to the first 202 of a request sent after it (* = led by the killed node): "
        + ", ".join(
            f"{p}{'*' if p in led else ''}={'never' if t is None else f'{t:.2f}'}"
            for p, t in after.items()
        )
        + f"; non-202 answers: {failed}"
    )
    assert all(t is not None for t in after.values()), after
    new = leaders(cluster, topic)
    assert all(new[p] != victim for p in led)
    return max(t for t in after.values() if t is not None)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ingest_writes_again_within_3s_of_a_leader_sigkill(cluster3, ingest):
    from logstream.broker.quorum import quorum_leader

    base, topic = ingest
    urls = url_per_partition(base)
    by_partition = leaders(cluster3, topic)
    worst: dict[str, float] = {}
    leader = by_partition[0]
    worst["leader"] = kill_and_measure(cluster3, base, topic, urls, leader, "leader")
    assert cluster3.start().started == [leader]  # only the dead node comes back
    wait_full_isr(cluster3, topic, 3, 60)
    controller = quorum_leader(cluster3.runtime, cluster3.bootstrap_servers)
    assert controller not in by_partition.values()  # a dedicated controller
    worst["active controller"] = kill_and_measure(
        cluster3, base, topic, urls, controller, "active controller"
    )
    print(f"\nworst unavailability per kill: {worst}")
    assert all(t <= BOUND_S for t in worst.values()), worst
